"""What the torch adapters (Lightning, transformers) do across ranks: one place for the
collectives around the tracker. Imports ``torch.distributed`` only when called."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wattwise.errors import MeterUnavailableError
from wattwise.records import PhaseRecord, reduce_records

__all__ = ["all_gather", "begin_stage", "reduce_phase"]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a collective: every rank calls it at the same hook)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def begin_stage(tracker: Any, stage: str, metadata: Mapping[str, Any], context: Any,
                world_size: int) -> None:
    """``tracker.begin_stage`` on every rank; a named meter that cannot open on any rank
    stops every rank before the first step (one gather of the errors under DDP)."""
    error: MeterUnavailableError | None = None
    try:
        tracker.begin_stage(stage, metadata=metadata, context=context)
    except MeterUnavailableError as e:
        error = e
    errors = [e for e in all_gather(None if error is None else str(error)) if e
              ] if world_size > 1 else []
    if error is not None:
        raise error
    if errors:
        raise MeterUnavailableError("; ".join(errors))


def reduce_phase(rec: PhaseRecord | None, has_meters: bool, projected: float | None,
                 world_size: int) -> tuple[PhaseRecord | None, float | None]:
    """A phase record summed over ranks, and the forecast's projection summed too (it is
    linear in joules); one gather under DDP, in which every rank takes part with or without
    a record. One process: the arguments as they are."""
    if world_size <= 1:
        return rec, projected
    gathered = all_gather((rec, has_meters, projected))
    known = [g[2] for g in gathered if g[2] is not None]
    return (None if rec is None else reduce_records([g[:2] for g in gathered]),
            sum(known) if known else None)
