"""``wattwise demo``: train a small MLP on the bundled digits with EnergyMonitor, show the energy."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from wattwise.cli._common import (
    CLIError,
    add_subcommand,
    add_training_options,
    check_training_args,
    make_out_dir,
    meters_arg,
)

EPILOG = """\
examples:
  wattwise demo                                   # Lightning, 3 epochs, meters="auto"
  wattwise demo --framework keras --epochs 2
  wattwise demo --out runs/demo1 --meters rapl nvml
  wattwise demo --hidden 256,256,256 --batch-size 32

afterwards:
  tensorboard --logdir <out>/tensorboard
  wattwise report <out>/summary.json --plot energy.png
"""

FRAMEWORKS = ("lightning", "keras")


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = add_subcommand(
        subparsers,
        "demo",
        help="train a small MLP on scikit-learn's bundled digits and report its energy",
        description=(
            "Trains a small MLP on scikit-learn's bundled handwritten digits (1797 8x8 images, "
            "no download) with wattwise's EnergyMonitor callback, then prints the energy table "
            "(joules, joules per sample, watts per phase), the cache-aware sizing advice, and "
            "where the TensorBoard logs and the run summary were written."
        ),
        epilog=EPILOG,
    )
    p.add_argument("--framework", default="lightning", metavar="NAME",
                   help="lightning (default) or keras")
    p.add_argument("--epochs", type=int, default=3, metavar="N", help="epochs (default 3)")
    p.add_argument("--hidden", default="128,128", metavar="W1,W2,...",
                   help="hidden layer widths (default 128,128); input 64, output 10")
    p.add_argument("--no-warmup", action="store_true",
                   help="measure from the first step of the process (default: one unmeasured "
                        "warm-up epoch of a throwaway copy first; Lightning only)")
    add_training_options(p, "demo")
    p.set_defaults(func=run)


def parse_widths(text: str, option: str = "--hidden") -> list[int]:
    """Parse ``"128,128"`` into ``[128, 128]``; raise CLIError naming ``option`` otherwise."""
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise CLIError(
            f"{option} {text!r}: expected comma-separated positive integers, e.g. 128,128"
        ) from None
    if not widths or any(w < 1 or w > 1_000_000 for w in widths):
        raise CLIError(
            f"{option} {text!r}: expected comma-separated integers in 1..1000000, e.g. 128,128"
        )
    return widths


def run(args: argparse.Namespace) -> int:
    if args.framework not in FRAMEWORKS:
        raise CLIError(f"--framework {args.framework!r}: choose lightning or keras")
    check_training_args(args, max_epochs=10_000)
    hidden = parse_widths(args.hidden)
    meters = meters_arg(args.meters, args.rapl_root)
    out = make_out_dir(args.out, "demo")
    summary_path = out / "summary.json"
    tb_dir = out / "tensorboard"

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorBoard may load TensorFlow
    from wattwise.datasets import load_digits

    data = load_digits(seed=args.seed)
    widths = [*hidden, data.n_classes]
    print(
        f"wattwise demo: MLP {data.n_features}-{'-'.join(map(str, widths))} on scikit-learn's "
        f"digits ({len(data.y_train)} train / {len(data.y_val)} validation samples), "
        f"{args.epochs} epoch(s), batch size {args.batch_size}, {args.framework}, "
        f"meters: {' '.join(args.meters)}" + (f" (RAPL at {args.rapl_root})" if args.rapl_root else "")
        + ("; after 1 unmeasured warm-up epoch" if args.framework == "lightning"
           and not args.no_warmup else ""),
        flush=True,
    )
    t0 = time.monotonic()
    val_acc = _train(args, data, hidden, meters, summary_path, tb_dir)
    elapsed = time.monotonic() - t0

    from wattwise.report import load_summary

    if not summary_path.exists():
        raise CLIError(f"training finished but no run summary was written to {str(summary_path)!r}")
    summary = load_summary(summary_path)
    print_estimate_note(summary)
    if val_acc is not None:
        print(f"\nvalidation accuracy after {args.epochs} epoch(s): {val_acc:.3f}; "
              f"wall time {elapsed:.1f} s")
    print()
    print(advice_text(summary, n_in=data.n_features, widths=widths,
                      batch_size=args.batch_size, n_samples=len(data.y_train)))
    print()
    print("Open the results:")
    print(f"  per-epoch table and plots:  wattwise report {summary_path} --plot {out / 'energy.png'}")
    print(f"  TensorBoard:                tensorboard --logdir {tb_dir}")
    print(f"  the run summary (JSON):     {summary_path}")
    return 0


def _train(args: argparse.Namespace, data: Any, hidden: list[int], meters: Any,
           summary_path: Path, tb_dir: Path) -> float | None:
    """Train with the chosen framework; the run table is printed by the callback."""
    import warnings

    from wattwise.errors import SizingWarning

    with warnings.catch_warnings():
        # the callback's sizing check still runs (its advice lands in the run summary); the
        # demo prints the advice once, after the energy table, instead of as a warning
        warnings.simplefilter("ignore", SizingWarning)
        if args.framework == "lightning":
            return train_lightning(data, hidden, args.epochs, args.batch_size, meters,
                                   summary_path, tb_dir, args.seed, warmup=not args.no_warmup)
        return train_keras(data, hidden, args.epochs, args.batch_size, meters,
                           summary_path, tb_dir, args.seed)


def print_estimate_note(summary: dict[str, Any]) -> None:
    """Say plainly when the numbers are estimates, and why counters were unavailable."""
    from wattwise.report import report_rows

    rows = report_rows(summary)
    if not rows or not any(r.estimated for r in rows):
        return
    print("\nNOTE: these numbers are ESTIMATES, not measurements: no hardware energy counter "
          "(NVML, RAPL) could be read on this machine, so the joules come from codecarbon's "
          "power model (estimated CPU power x time). Run `wattwise probe` to see why and how to "
          "enable a real counter.")


def advice_text(summary: dict[str, Any], *, n_in: int, widths: list[int], batch_size: int,
                n_samples: int) -> str:
    """The sizing advice for the demo MLP on this machine, as text
    (:func:`wattwise.sizing.advice_text`: the advice and whether its coefficients are
    calibrated on this machine), and the prediction against this run's own J/sample.

    Args:
        summary: the run summary (its train totals are compared with the prediction).
        n_in: input width.
        widths: Dense widths, output included.
        batch_size: training batch size.
        n_samples: training samples per epoch (what one epoch trains on).

    Says plainly when the network is already near a cache boundary (no resize suggested).
    """
    try:
        import warnings

        from wattwise.hardware import detect_hierarchy
        from wattwise.model.advise import advice_from_widths
        from wattwise.sizing import advice_text as labelled_text
        from wattwise.sizing import resolve_coefficients

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hierarchy = detect_hierarchy("auto")
        coefficients = resolve_coefficients(None, hierarchy)  # this machine's calibration
        advice = advice_from_widths(list(widths), n_in, batch_size, hierarchy,
                                    n_samples=n_samples, coefficients=coefficients)
        text = labelled_text(advice)
    except Exception as e:  # noqa: BLE001 - advice is a bonus; the energy table stands
        return f"Sizing advice not available: {type(e).__name__}: {e}"
    text += _against_run(summary, advice.joules_per_sample)
    if advice.near:
        text += ("\n=> This network's backward working set is already NEAR a cache boundary, "
                 "where the paper found training energy per sample lowest: no resize needed.")
    else:
        text += ("\n=> This network's backward working set is FAR from every cache boundary; "
                 "the options above say how to resize it (model estimates, not measurements).")
    return text


def _against_run(summary: dict[str, Any], predicted_j: float) -> str:
    """One line: the model's predicted train J/sample against this run's own (measured or
    estimated, said which); "" when the run's is unknown."""
    from wattwise.report import report_rows

    train = next((r for r in report_rows(summary) if r.epoch is None and r.phase == "train"),
                 None)
    if train is None or not train.joules_per_sample:
        return ""
    own = train.joules_per_sample
    what = "estimated (codecarbon)" if train.estimated else "measured"
    return (f"\nthis run's {what} training energy: {own * 1e3:.4g} mJ per sample; the model "
            f"predicts {predicted_j * 1e3:.4g} mJ ({predicted_j / own:.2f}x)")


# --------------------------------------------------------------------------------------------
# training


def train_lightning(data: Any, hidden: list[int], epochs: int, batch_size: int,
                    meters: str | list[str], summary_path: Path, tb_dir: Path | None,
                    seed: int, *, progress: bool | None = None,
                    monitor_kwargs: dict[str, Any] | None = None,
                    epoch_lines: bool = True, warmup: bool = False) -> float | None:
    """Train an MLP (64 -> hidden -> 10) with Lightning + EnergyMonitor on ``data``.

    Args:
        progress: show Lightning's progress bar; None = only when stderr is a terminal
            (or ``WATTWISE_PROGRESS=1``).
        monitor_kwargs: extra keyword arguments for ``EnergyMonitor``.
        epoch_lines: print a line per epoch when there is no progress bar and ``tb_dir``.
        warmup: first train a throwaway copy of the network for one epoch, unmeasured, so that
            the measured run does not carry the process's one-off costs (first calls into
            torch and Lightning); the measured model starts from the same seed either way.

    Returns:
        The final validation accuracy, or None.
    """
    torch, pl, TensorBoardLogger = _import_lightning()
    import logging

    from torch.utils.data import DataLoader, TensorDataset

    from wattwise.lightning import EnergyMonitor

    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if warmup:
        _warm_up(pl, torch, data, hidden, batch_size, seed)
    pl.seed_everything(seed, verbose=False)
    model = _digits_module(pl, torch, data.n_features, hidden, data.n_classes)
    train = DataLoader(TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)),
                       batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)),
                     batch_size=batch_size)
    logger: Any = (TensorBoardLogger(save_dir=str(tb_dir.parent), name=tb_dir.name, version="")
                   if tb_dir is not None else False)
    if progress is None:
        progress = sys.stderr.isatty() or os.environ.get("WATTWISE_PROGRESS") == "1"
    callbacks: list[Any] = [EnergyMonitor(meters, summary_path=summary_path, **(monitor_kwargs or {}))]
    if not progress and tb_dir is not None and epoch_lines:
        callbacks.append(_epoch_line(pl, epochs))
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="auto",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=5,
        enable_progress_bar=progress,
    )
    trainer.fit(model, train, val)
    acc = trainer.callback_metrics.get("val_acc")
    return float(acc) if acc is not None else None


def _warm_up(pl: Any, torch: Any, data: Any, hidden: list[int], batch_size: int,
             seed: int) -> None:
    """One unmeasured epoch of a throwaway copy of the network (no monitor, no logger)."""
    from torch.utils.data import DataLoader, TensorDataset

    pl.seed_everything(seed, verbose=False)
    model = _digits_module(pl, torch, data.n_features, hidden, data.n_classes)
    train = DataLoader(TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)),
                       batch_size=batch_size, shuffle=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no val_dataloader": none is wanted here
        pl.Trainer(max_epochs=1, accelerator="auto", devices=1, logger=False,
                   enable_checkpointing=False, enable_model_summary=False,
                   enable_progress_bar=False, limit_val_batches=0,
                   num_sanity_val_steps=0).fit(model, train)


def _import_lightning() -> tuple[Any, Any, Any]:
    """(torch, lightning.pytorch or pytorch_lightning, its TensorBoardLogger), or a CLIError
    that says what to install."""
    try:
        import torch
    except ImportError as e:
        raise CLIError('the Lightning demo needs torch: pip install ".[demo]" torch==2.13.0') from e
    try:
        import lightning.pytorch as pl
        from lightning.pytorch.loggers import TensorBoardLogger
    except ImportError:
        try:
            import pytorch_lightning as pl  # type: ignore[no-redef]
            from pytorch_lightning.loggers import TensorBoardLogger  # type: ignore[assignment]
        except ImportError as e:
            raise CLIError('the Lightning demo needs lightning: pip install ".[demo]"') from e
    return torch, pl, TensorBoardLogger


def _digits_module(pl: Any, torch: Any, n_in: int, hidden: list[int], n_out: int) -> Any:
    """A LightningModule: the MLP n_in -> hidden (ReLU) -> n_out, cross-entropy, Adam 1e-3,
    logging ``val_acc``."""
    from torch import nn

    layers: list[nn.Module] = []
    prev = n_in
    for w in hidden:
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, n_out))

    class DigitsMLP(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            logits = self(x)
            self.log("val_loss", nn.functional.cross_entropy(logits, y), prog_bar=True)
            self.log("val_acc", (logits.argmax(1) == y).float().mean(), prog_bar=True)

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    return DigitsMLP()


def _epoch_line(pl: Any, epochs: int) -> Any:
    """A callback printing one progress line per epoch (when no progress bar is shown)."""

    class EpochLine(pl.Callback):  # type: ignore[misc]
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            print(f"  epoch {trainer.current_epoch + 1}/{epochs} done", flush=True)

    return EpochLine()


def train_keras(data: Any, hidden: list[int], epochs: int, batch_size: int,
                meters: str | list[str], summary_path: Path, tb_dir: Path,
                seed: int) -> float | None:
    """Train the demo MLP with Keras 3 + EnergyMonitor; returns the validation accuracy."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import keras
    except ImportError as e:
        raise CLIError('the Keras demo needs keras and a backend: pip install "wattwise[keras]" '
                       "tensorflow-cpu (or torch / jax)") from e
    from wattwise.keras import EnergyMonitor

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((data.n_features,))]
        + [keras.layers.Dense(w, activation="relu") for w in hidden]
        + [keras.layers.Dense(data.n_classes)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    monitor = EnergyMonitor(meters, summary_path=summary_path, log_dir=tb_dir)
    history = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                        epochs=epochs, batch_size=batch_size, callbacks=[monitor],
                        verbose=1 if sys.stdout.isatty() else 2)
    acc = history.history.get("val_accuracy")
    return float(acc[-1]) if acc else None
