"""Lightning training batches are not looked at when the loader's batches are predictable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _wattwise_lit import Api, loader, make_module

import wattwise.tracker
from wattwise.testing import FakeMeter


def _fit(api: Api, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    path = tmp_path / "s.json"
    mon = api.EnergyMonitor(meters=[FakeMeter(("cpu:package-0",), joules_per_read=1.0)],
                            summary_path=path, print_summary=False, advice=False, **kw)
    trainer = api.trainer(tmp_path, callbacks=[mon], max_epochs=2, logger=False,
                          limit_train_batches=1.0)
    trainer.fit(make_module(api), loader(10))  # batches of 4, 4, 2
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_train_samples_come_from_the_plan_without_counting_batches(
        lit_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_counting(*a: Any) -> None:
        raise AssertionError("a training batch was looked at")

    monkeypatch.setattr(wattwise.tracker, "count_samples", no_counting)
    summary = _fit(lit_api, tmp_path)
    for e in summary["epochs"]:
        assert (e["phases"]["train"]["samples"], e["phases"]["train"]["batches"]) == (10, 3)


def test_batch_size_fn_still_counts_every_batch(lit_api: Api, tmp_path: Path) -> None:
    summary = _fit(lit_api, tmp_path, batch_size_fn=lambda b: 2 * len(b[0]))
    assert [e["phases"]["train"]["samples"] for e in summary["epochs"]] == [20, 20]
