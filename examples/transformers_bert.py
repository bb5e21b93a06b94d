"""Joules per training sample of a tiny BERT classifier, with Hugging Face transformers.

The model is built from a config (no download) and trained on random tokens, on CPU::

    python examples/transformers_bert.py              # logs under ./bert_energy
    tensorboard --logdir bert_energy                  # train/energy_joules, eval/energy_joules ...

On a machine with readable RAPL or an NVIDIA GPU the numbers are measured; elsewhere wattwise
falls back to codecarbon's estimate (``energy_estimated`` = 1.0) or logs nothing, and says so
in a warning - it never logs 0 J for unknown.
"""

from __future__ import annotations

import argparse
import os

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from wattwise.transformers import EnergyMonitor

VOCAB, SEQ = 100, 16


class RandomTokens(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Random token ids; the label is the parity of the first token."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, SEQ), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i, 0] % 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="bert_energy", help="output and TensorBoard folder")
    args = parser.parse_args()
    n_train = 64 if os.environ.get("WATTWISE_EXAMPLE_FAST") else 512

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=SEQ, num_labels=2))
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", os.path.join(args.out, "tensorboard"))
    training = TrainingArguments(
        output_dir=args.out, num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, eval_strategy="epoch", logging_strategy="epoch",
        save_strategy="no", report_to=["tensorboard"], use_cpu=True, disable_tqdm=True)
    monitor = EnergyMonitor()  # run summary: <out>/wattwise_summary.json
    trainer = Trainer(model=model, args=training, train_dataset=RandomTokens(n_train, 0),
                      eval_dataset=RandomTokens(n_train // 4, 1), callbacks=[monitor])
    trainer.train()

    for entry in trainer.state.log_history:
        energy = {k: round(v, 4) for k, v in entry.items() if "energy_" in k}
        if energy:
            print(f"step {entry['step']}: {energy}")
    print(f"run summary: {os.path.join(args.out, 'wattwise_summary.json')}")


if __name__ == "__main__":
    main()
