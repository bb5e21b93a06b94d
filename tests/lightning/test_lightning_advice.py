"""The sizing check of the Lightning EnergyMonitor: advice for every model, or a warning why not."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from _wattwise_lit import Api, loader

from wattwise.errors import WattwiseWarning
from wattwise.testing import FakeMeter

torch = pytest.importorskip("torch")


def _module(api: Api, *, with_forward: bool, broken_step_records: bool = False) -> Any:
    """A 4 -> 8 -> 2 MLP whose training_step calls ``self.net(x)``; ``forward`` only when asked."""

    class NoForward(api.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
            self.loss = torch.nn.CrossEntropyLoss()  # a leaf module the step calls: not a layer

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return self.loss(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class WithForward(NoForward):
        def forward(self, x: Any) -> Any:
            return self.net(x)

    class NoLayers(api.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(4, 2))

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.cross_entropy(x @ self.w, y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    if broken_step_records:
        return NoLayers()
    return WithForward() if with_forward else NoForward()


def _fit(api: Api, tmp_path: Path, module: Any) -> tuple[dict[str, Any], list[warnings.WarningMessage]]:
    summary = tmp_path / "summary.json"
    mon = api.EnergyMonitor(meters=[FakeMeter(("cpu:package-0",))], print_summary=False,
                            summary_path=summary, hardware="butter-e-cpu")
    trainer = api.trainer(tmp_path, callbacks=[mon], max_epochs=1, logger=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, loader(12))
    return json.loads(summary.read_text()), list(caught)


def test_module_without_forward_gets_advice_from_the_first_training_step(lit_api: Api, tmp_path: Path) -> None:
    summary, caught = _fit(lit_api, tmp_path, _module(lit_api, with_forward=False))
    advice = summary["advice"]
    assert advice is not None and summary["advice_error"] is None
    assert advice["working_sets"]["widths"] == [8, 2]  # the MLP inside, loss module left out
    assert advice["working_sets"]["batch_size"] == 4
    assert any("first training step" in n and "hooks" in n for n in advice["notes"])
    assert {o["kind"] for o in advice["options"]} >= {"batch_size"}
    assert not [w for w in caught if "no sizing advice" in str(w.message)]


def test_both_paths_give_the_same_advice(lit_api: Api, tmp_path: Path) -> None:
    without, _ = _fit(lit_api, tmp_path / "a", _module(lit_api, with_forward=False))
    with_fwd, _ = _fit(lit_api, tmp_path / "b", _module(lit_api, with_forward=True))
    assert without["advice"]["working_sets"] == with_fwd["advice"]["working_sets"]
    # both from the recorded step: the callback runs no extra forward pass
    assert any("no extra forward pass" in n for n in with_fwd["advice"]["notes"])


def test_no_advice_is_one_warning_with_the_reason_in_the_summary(lit_api: Api, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    summary, caught = _fit(lit_api, tmp_path, _module(lit_api, with_forward=False,
                                                      broken_step_records=True))
    assert summary["advice"] is None
    assert "ran no submodule" in summary["advice_error"]
    msgs = [str(w.message) for w in caught if issubclass(w.category, WattwiseWarning)
            and "no sizing advice" in str(w.message)]
    assert len(msgs) == 1 and "ran no submodule" in msgs[0]
    assert summary["status"] == "completed"  # training went on
    # `wattwise fit` on that summary says the real reason, not "train with advice=True"
    from wattwise.cli.main import main

    rc = main(["fit", str(tmp_path / "summary.json"), "--out", str(tmp_path / "c.json")])
    err = capsys.readouterr().err
    assert rc != 0 and "ran no submodule" in err and "advice=True" not in err


def test_the_first_step_hooks_come_off(lit_api: Api, tmp_path: Path) -> None:
    """The sizing check's forward hooks are armed before the first step and removed after it,
    or at the stage's end when no step ended (a fit that fails in its first step)."""
    module = _module(lit_api, with_forward=False)
    _fit(lit_api, tmp_path / "ok", module)
    leaves = [m for m in module.modules() if not list(m.children())]
    assert leaves and not any(m._forward_hooks for m in leaves)

    class Boom(RuntimeError):
        pass

    failing = _module(lit_api, with_forward=False)

    def fail(*a: Any, **k: Any) -> Any:
        raise Boom("the first step fails")

    failing.training_step = fail  # type: ignore[method-assign]
    with pytest.raises(Boom):
        _fit(lit_api, tmp_path / "fail", failing)
    assert not any(m._forward_hooks for m in failing.modules())
