"""A tiny BERT built from a config (no download) and random-token datasets for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

VOCAB, SEQ = 100, 16


class Tokens(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """``n`` random sequences of ``SEQ`` token ids with a binary label."""

    def __init__(self, n: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, VOCAB, (n, SEQ), generator=g)
        self.labels = (self.ids[:, 0] % 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def tiny_bert() -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=SEQ, num_labels=2))


def make_trainer(tmp_path: Path, callbacks: list[Any], *, n_train: int = 64, n_eval: int = 20,
                 **overrides: Any) -> Any:
    from transformers import Trainer, TrainingArguments

    settings: dict[str, Any] = dict(
        output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=8,
        per_device_eval_batch_size=8, use_cpu=True, report_to=["tensorboard"],
        save_strategy="no", logging_strategy="epoch", disable_tqdm=True, seed=0)
    settings.update(overrides)
    return Trainer(model=tiny_bert(), args=TrainingArguments(**settings),
                   train_dataset=Tokens(n_train), eval_dataset=Tokens(n_eval, seed=1),
                   callbacks=callbacks)


def read_scalars(root: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files under ``root``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(root.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out
