"""Every test sees an empty wattwise config folder: a calibration stored on the machine that
runs the tests (``wattwise calibrate``) must not change what the tests predict."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _empty_config_dir(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path_factory.mktemp("wattwise-config")
    monkeypatch.setenv("WATTWISE_CONFIG_DIR", str(path))
    return path
