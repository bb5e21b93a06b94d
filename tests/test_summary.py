"""Tests of the run-summary file helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wattwise.errors import ConfigurationError
from wattwise.summary import SCHEMA_VERSION, read_summary, write_json_atomic


def test_atomic_write_roundtrip_and_no_temp_left(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "run.json"
    write_json_atomic(
        path, {"schema_version": SCHEMA_VERSION, "x": [1, 2.5, None], "p": Path("/q")}
    )
    write_json_atomic(path, {"schema_version": SCHEMA_VERSION, "x": "second"})
    assert read_summary(path) == {"schema_version": SCHEMA_VERSION, "x": "second"}
    assert os.listdir(path.parent) == ["run.json"]


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    write_json_atomic(path, {"schema_version": 1, "ok": True})
    with pytest.raises(ValueError):
        write_json_atomic(path, {"schema_version": 1, "bad": float("nan")})
    assert json.loads(path.read_text()) == {"schema_version": 1, "ok": True}
    assert os.listdir(tmp_path) == ["run.json"]


def test_read_summary_checks_schema(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        read_summary(p)
    p.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ConfigurationError, match="schema_version"):
        read_summary(p)
    p.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ConfigurationError, match="upgrade wattwise"):
        read_summary(p)


def test_schema_doc_lists_every_summary_field() -> None:
    """docs/summary-schema.md documents every top-level and record field the tracker writes."""
    from wattwise import EnergyTracker
    from wattwise.testing import FakeMeter

    m = FakeMeter()
    t = EnergyTracker([m], idle_baseline_s=0.01, carbon_intensity_g_per_kwh=100.0)
    t.start()
    t.start_window("train", 0)
    t.end_epoch()
    s = t.finish()
    doc = (Path(__file__).resolve().parents[1] / "docs" / "summary-schema.md").read_text()
    fields = set(s) | set(s["totals"]["run"]) | set(s["epochs"][0]) | set(s["meters"][0])
    fields |= set(s["idle_baseline"]) | set(s["carbon_intensity"]) | set(s["config"])
    missing = sorted(f for f in fields if f"`{f}`" not in doc)
    assert not missing, f"fields not documented in docs/summary-schema.md: {missing}"
    assert (
        f"schema_version` | int | {SCHEMA_VERSION}" in doc or f"currently `{SCHEMA_VERSION}`" in doc
    )
