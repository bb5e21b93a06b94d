"""Fixtures of the Lightning tests (helpers live in ``_wattwise_lit``)."""

from __future__ import annotations

import pytest
from _wattwise_lit import PACKAGES, Api


@pytest.fixture(params=PACKAGES, ids=["lightning", "pytorch_lightning"])
def api(request: pytest.FixtureRequest) -> Api:
    pytest.importorskip(request.param)
    return Api(request.param)


@pytest.fixture
def lit_api() -> Api:
    pytest.importorskip("lightning.pytorch")
    return Api("lightning.pytorch")


