"""How the Lightning EnergyMonitor logs: where Lightning's own callbacks log, with ``epoch``, each
logger's ``group_separator``, names every logger accepts, the progress bar, the docs recipe."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from _wattwise_lit import Api, loader, make_module

from wattwise.errors import ConfigurationError
from wattwise.testing import FakeMeter

torch = pytest.importorskip("torch")

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOMAINS = ("cpu:package-0", "gpu:0")


class Advance:
    """Builds a callback that moves each domain of a meter by 1 J per training batch and 0.5 J
    per validation batch (sanity check excluded): with two domains, 6 J per train epoch of 10
    samples, 2 J per validation run of 6 samples."""

    @staticmethod
    def make(api: Api, meter: FakeMeter) -> Any:
        class _Advance(api.Callback):  # type: ignore[misc, name-defined]
            def on_train_batch_end(self, *args: Any) -> None:
                meter.advance(1.0)

            def on_validation_batch_end(self, trainer: Any, *args: Any) -> None:
                if not trainer.sanity_checking:
                    meter.advance(0.5)

        return _Advance()


def fit(api: Api, tmp_path: Path, logger: Any, *, estimated: bool = False, epochs: int = 2,
        **monitor_kwargs: Any) -> Any:
    meter = FakeMeter(DOMAINS, estimated=estimated, name="codecarbon" if estimated else "fake")
    mon = api.EnergyMonitor(meters=[meter], print_summary=False, advice=False, **monitor_kwargs)
    trainer = api.trainer(tmp_path, callbacks=[Advance.make(api, meter), mon],
                          max_epochs=epochs, logger=logger)
    trainer.fit(make_module(api), loader(10), loader(6))
    return trainer


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------
def test_csv_rows_carry_the_epoch(lit_api: Api, tmp_path: Path) -> None:
    """Energy rows in CSVLogger's metrics.csv have the epoch filled in (Lightning adds it for
    pl_module.log metrics), and the step of Lightning's own epoch-end metrics."""
    logger = lit_api.loggers.CSVLogger(str(tmp_path), name="csv", version=0)
    trainer = fit(lit_api, tmp_path, logger, estimated=True)
    rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    train = [r for r in rows if r.get("energy/train_joules")]
    val = [r for r in rows if r.get("energy/val_joules")]
    assert [(r["epoch"], r["step"]) for r in train] == [("0", "2"), ("1", "5")]
    assert [r["epoch"] for r in val] == ["0", "1"]
    assert [float(r["energy/train_joules"]) for r in train] == [6.0, 6.0]
    assert [float(r["energy/estimated"]) for r in train] == [1.0, 1.0]
    assert float(train[0]["energy/train_joules/cpu_package-0"]) == 3.0
    # the same keys in trainer.logged_metrics, as pl_module.log(on_epoch=True) leaves them
    assert float(trainer.logged_metrics["energy/train_joules_per_sample"]) == pytest.approx(0.6)
    assert float(trainer.logged_metrics["energy/val_joules"]) == pytest.approx(2.0)


def test_each_logger_group_separator_is_honoured(lit_api: Api, tmp_path: Path) -> None:
    """A logger whose group_separator is "." gets energy.train_joules, as DeviceStatsMonitor
    does it; trainer.callback_metrics keep the documented keys."""

    class DotCSV(lit_api.loggers.CSVLogger):  # type: ignore[misc, name-defined]
        @property
        def group_separator(self) -> str:
            return "."

    dot = DotCSV(str(tmp_path), name="dot", version=0)
    plain = lit_api.loggers.CSVLogger(str(tmp_path), name="plain", version=0)
    trainer = fit(lit_api, tmp_path, [dot, plain], epochs=1)
    dot_cols = set(read_csv(Path(dot.log_dir) / "metrics.csv")[0])
    plain_cols = set(read_csv(Path(plain.log_dir) / "metrics.csv")[0])
    assert {"energy.train_joules", "energy.train_joules.cpu_package-0", "energy.estimated",
            "energy.val_joules_per_sample", "epoch"} <= dot_cols
    assert not any(c.startswith("energy/") for c in dot_cols)
    assert {"energy/train_joules", "energy/train_joules/gpu_0"} <= plain_cols
    assert "energy/train_joules" in trainer.callback_metrics


def test_mlflow_receives_every_key_without_a_rename(lit_api: Api, tmp_path: Path) -> None:
    """MLflow (sqlite store) gets every energy key as is: no key Lightning has to rename."""
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("alembic")
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = lit_api.loggers.MLFlowLogger(experiment_name="wattwise", tracking_uri=uri)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = fit(lit_api, tmp_path, logger)
    renames = [str(w.message) for w in caught if "MLFlow only allows" in str(w.message)]
    assert renames == []
    logged = MlflowClient(tracking_uri=uri).get_run(logger.run_id).data.metrics
    energy = {k for k in trainer.callback_metrics if k.startswith("energy")}
    assert "energy/train_joules/cpu_package-0" in energy and "energy/val_joules/gpu_0" in energy
    assert energy <= set(logged), energy - set(logged)
    assert logged["energy/train_joules"] == pytest.approx(6.0)
    assert logged["epoch"] == 1.0


def test_progress_bar_shows_joules_per_sample_only_when_asked(lit_api: Api, tmp_path: Path) -> None:
    default = fit(lit_api, tmp_path / "off", False, epochs=1)
    assert not any(k.startswith("energy") for k in default.progress_bar_metrics)
    shown = fit(lit_api, tmp_path / "on", False, epochs=1, prog_bar=True)
    bar = {k: v for k, v in shown.progress_bar_metrics.items() if k.startswith("energy")}
    assert bar == {"energy/train_joules_per_sample": pytest.approx(0.6),
                   "energy/val_joules_per_sample": pytest.approx(2.0 / 6)}


def test_progress_bar_in_a_validate_stage(lit_api: Api, tmp_path: Path) -> None:
    meter = FakeMeter(DOMAINS)
    mon = lit_api.EnergyMonitor(meters=[meter], print_summary=False, advice=False, prog_bar=True)
    trainer = lit_api.trainer(tmp_path, callbacks=[Advance.make(lit_api, meter), mon])
    trainer.validate(make_module(lit_api), loader(6))
    assert trainer.progress_bar_metrics["energy/val_joules_per_sample"] == pytest.approx(2.0 / 6)
    assert "energy/val_joules" not in trainer.progress_bar_metrics


def test_prog_bar_must_be_a_bool(lit_api: Api) -> None:
    with pytest.raises(ConfigurationError, match=r"EnergyMonitor\(prog_bar='yes'\)"):
        lit_api.EnergyMonitor(meters=[FakeMeter()], prog_bar="yes")


def _docs_block(doc: Path, name: str) -> str:
    """The code of the ``{code-block}`` named ``name`` in a MyST page."""
    text = doc.read_text()
    m = re.search(r"```\{code-block\} python\n:name: " + re.escape(name) + r"\n\n(.*?)\n```",
                  text, re.S)
    assert m, f"no code block named {name!r} in {doc}"
    return m.group(1)


def test_docs_recipe_early_stopping_and_checkpoint_runs(
    lit_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The EarlyStopping/ModelCheckpoint recipe of docs/lightning.md, as written, with this
    machine's meters (here: no counters, codecarbon's estimate; on a GPU box: NVML)."""
    pytest.importorskip("codecarbon")
    monkeypatch.chdir(tmp_path)
    code = _docs_block(DOCS / "lightning.md", "recipe-energy-early-stopping")
    scope: dict[str, Any] = {"model": make_module(lit_api), "train_loader": loader(10),
                             "val_loader": loader(6)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, "docs/lightning.md", "exec"), scope)  # noqa: S102 - our own docs
    trainer, stop, best = scope["trainer"], scope["stop"], scope["best"]
    assert trainer.state.finished
    assert trainer.current_epoch <= 20
    assert "energy/train_joules_per_sample" in trainer.callback_metrics
    assert float(trainer.callback_metrics["energy/estimated"]) in (0.0, 1.0)
    assert stop.stopped_epoch == 0 or stop.wait_count >= stop.patience
    path = Path(best.best_model_path)
    assert path.is_file() and path.parent == Path(best.dirpath)  # no folder made by the "/"
    assert re.fullmatch(r"epoch\d+-val_jps[0-9.e+-]+\.ckpt", path.name), path.name
