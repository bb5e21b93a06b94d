"""The energy of one function call: the ``@wattwise.measure`` decorator.

    python examples/measure_function.py           # writes measure_function_energy.json

Each call of the decorated function is one run: meters opened, the function run, the run
ended ``completed`` (or ``failed`` with the error), the summary in ``train.last_summary`` and
in the JSON file. Inside, ``train.tracker`` is that call's tracker, for per-epoch numbers.
"""

from __future__ import annotations

import argparse

import torch

import wattwise
from wattwise.datasets import load_digits

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=3)
args = parser.parse_args()


@wattwise.measure(summary_path="measure_function_energy.json", print_summary=True)
def train(epochs: int) -> float:
    torch.manual_seed(0)
    data = load_digits()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tracker = train.tracker  # this call's tracker: phases make J/sample known
    assert tracker is not None
    for _ in range(epochs):
        with tracker.epoch(), tracker.phase("train"):
            for i in range(0, len(x), 64):
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64])
                loss.backward()
                opt.step()
                tracker.add_batch(len(x[i : i + 64]))
    return float(loss.detach())


if __name__ == "__main__":
    final_loss = train(args.epochs)
    run = train.last_summary["totals"]["run"] if train.last_summary else {}
    print(f"final loss {final_loss:.3f}; the call used {run.get('joules')} joules "
          f"in {run.get('seconds', 0.0):.2f} s")
