"""``@record``: ``@dataclass(frozen=True)``, cheaper to define.

A frozen dataclass compiles six methods with ``exec`` when its class is defined: ``__init__``,
``__setattr__``, ``__delattr__``, ``__repr__``, ``__eq__`` and ``__hash__``. That is ~0.65 ms a
class on the development VM, and a Lightning fit with the sizing check imports 29 of them
inside the user's fit. ``@record`` lets :mod:`dataclasses` compile the first three (so creating
and freezing an instance is unchanged) and gives every record the same three shared functions
for the rest, which read the field names the decorator stored: ~0.45 ms a class (the import
rows of ``benchmarks/fit_costs.py``, in docs/benchmarks.md, "wattwise next to its peers").
``tests/test_record.py`` checks that the behaviour equals the frozen dataclass's: equality,
hashing, ``repr``, assignment and deletion errors, :func:`dataclasses.replace`,
:func:`dataclasses.asdict`, pickling.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["record"]

_T = TypeVar("_T", bound=type)

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda f: f


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__record_repr__)
    return f"{self.__class__.__qualname__}({fields})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        names = self.__record_compare__
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, n) for n in self.__record_hash__))


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def record(cls: _T) -> _T:
    """Make ``cls`` a frozen dataclass (as ``@dataclass(frozen=True)``; no other options)."""
    own = set(cls.__dict__)  # methods the class defines itself are kept, as dataclass does
    dataclasses.dataclass(frozen=True, repr=False, eq=False)(cls)  # adds to cls, returns it
    fields = dataclasses.fields(cls)
    cls.__record_repr__ = tuple(f.name for f in fields if f.repr)  # type: ignore[attr-defined]
    cls.__record_compare__ = tuple(f.name for f in fields if f.compare)  # type: ignore[attr-defined]
    cls.__record_hash__ = tuple(  # type: ignore[attr-defined]
        f.name for f in fields if (f.compare if f.hash is None else f.hash))
    for name, fn in (("__repr__", _repr), ("__eq__", _eq), ("__hash__", _hash)):
        if name not in own:
            setattr(cls, name, fn)
    return cls
