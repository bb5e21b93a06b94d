"""Joules per training sample of a plain PyTorch loop: ``EnergyTracker`` as a context manager.

Runs on CPU in seconds::

    python examples/plain_loop.py                 # writes plain_loop_energy.json
    wattwise report plain_loop_energy.json        # the per-epoch table again

``with EnergyTracker(...)`` begins the run and ends it ``completed`` (or ``failed`` /
``interrupted`` with the error when the loop raises); ``with tracker.epoch()`` numbers the
epochs; ``with tracker.phase("train")`` is one window, read at its two ends only. On a machine
with no readable counter the numbers are codecarbon's **estimate**, and say so.
"""

from __future__ import annotations

import argparse

import torch

from wattwise import EnergyTracker
from wattwise.console import format_run_table
from wattwise.datasets import load_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--summary", default="plain_loop_energy.json", help="run summary JSON")
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load_digits()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    xv, yv = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    with EnergyTracker(summary_path=args.summary, run_name="plain-loop") as tracker:
        for _ in range(args.epochs):
            with tracker.epoch() as epoch:
                with tracker.phase("train") as train:
                    for i in range(0, len(x), args.batch_size):
                        xb, yb = x[i : i + args.batch_size], y[i : i + args.batch_size]
                        opt.zero_grad()
                        torch.nn.functional.cross_entropy(model(xb), yb).backward()
                        opt.step()
                        tracker.add_batch(len(xb))
                with tracker.phase("validate"), torch.no_grad():
                    accuracy = (model(xv).argmax(1) == yv).float().mean().item()
                    tracker.add_batch(len(xv))
            rec = train.record
            if rec is not None:
                label = " (estimate)" if rec.estimated else ""
                print(f"epoch {epoch.epoch}: val accuracy {accuracy:.2f}, "
                      f"train {rec.joules_per_sample} J/sample{label}")
    print(format_run_table(tracker.summary()))


if __name__ == "__main__":
    main()
