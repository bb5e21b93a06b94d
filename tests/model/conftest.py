from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest


def shared_dir() -> Path:
    env = os.environ.get("WATTWISE_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared"


@pytest.fixture(scope="session")
def butter_dir() -> Path:
    d = shared_dir() / "data" / "butter_e"
    if not d.is_dir():
        msg = f"BUTTER-E reference data not found at {d} (set WATTWISE_SHARED)"
        if os.environ.get("CI"):  # CI always has ../shared: a missing folder is a broken setup
            pytest.fail(msg)
        pytest.skip(msg)
    return d


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def read_csv():
    return _read_csv
