"""Train a small Keras 3 MLP on scikit-learn's bundled digits and measure its energy (CPU, < 1 min).

    python examples/keras_mlp.py                       # backend from KERAS_BACKEND (default tensorflow)
    KERAS_BACKEND=jax python examples/keras_mlp.py --epochs 3 --log-dir runs/keras_mlp

``EnergyMonitor`` reads the machine's energy counters ("auto": NVML GPUs, RAPL CPU packages, or
codecarbon's estimate when neither is readable - then every key says ``estimated``) at epoch
and validation boundaries, writes ``energy_joules_per_sample`` and friends into the epoch logs
(so ``History`` and ``CSVLogger`` record them), writes TensorBoard scalars without TensorFlow
(``--log-dir``), the run summary JSON, and prints a table at the end. ``--fake`` uses a scripted
meter instead (for machines without any counter and without codecarbon).
``WATTWISE_EXAMPLE_FAST=1`` (the test suite) trains on 200 samples only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    p.add_argument("--log-dir", default="runs/keras_mlp", help="TensorBoard + CSV + summary dir")
    p.add_argument("--fake", action="store_true", help="use a scripted FakeMeter (demo only)")
    args = p.parse_args(argv)

    import keras

    from wattwise.datasets import load_digits
    from wattwise.keras import EnergyMonitor

    keras.utils.set_random_seed(0)
    data = load_digits()
    x_train, y_train, x_val, y_val = data.x_train, data.y_train, data.x_val, data.y_val
    if os.environ.get("WATTWISE_EXAMPLE_FAST") == "1":  # the test suite: a few batches only
        x_train, y_train, x_val, y_val = x_train[:200], y_train[:200], x_val[:50], y_val[:50]
    model = keras.Sequential(
        [keras.Input((data.n_features,))]
        + [keras.layers.Dense(w, activation="relu") for w in args.hidden]
        + [keras.layers.Dense(data.n_classes)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    meters: object = "auto"
    if args.fake:
        from wattwise.testing import FakeMeter

        meters = [FakeMeter(("cpu:package-0",), joules_per_read=5.0)]
    log_dir = Path(args.log_dir)
    monitor = EnergyMonitor(meters, log_dir=log_dir, summary_path=log_dir / "summary.json")  # type: ignore[arg-type]
    with monitor:  # final summary also on Ctrl-C (Keras has no exception hook)
        history = model.fit(
            x_train, y_train, validation_data=(x_val, y_val),
            batch_size=args.batch_size, epochs=args.epochs, verbose=2,
            callbacks=[monitor, keras.callbacks.CSVLogger(str(log_dir / "history.csv"))],
        )
    energy = {k: v for k, v in history.history.items() if "energy" in k}
    for key, values in sorted(energy.items()):
        print(f"{key:40} " + "  ".join(f"{v:.4g}" for v in values))
    print(f"summary: {log_dir / 'summary.json'}   tensorboard --logdir {log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
