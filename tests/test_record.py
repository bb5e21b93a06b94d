"""``@record`` behaves as ``@dataclass(frozen=True)``: each check runs on both."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import pickle
import pkgutil
from dataclasses import dataclass, field
from typing import Any

import pytest

import wattwise
from wattwise._record import record


@dataclass(frozen=True)
class DataPoint:
    name: str
    value: float = 0.0
    tags: tuple[str, ...] = ()
    note: str = field(default="", compare=False, repr=False)
    extra: dict[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))


@record
class RecordPoint:
    name: str
    value: float = 0.0
    tags: tuple[str, ...] = ()
    note: str = field(default="", compare=False, repr=False)
    extra: dict[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))


@record
class Node:
    label: str
    children: list[Any] = field(default_factory=list, hash=False)


@pytest.mark.parametrize("cls", [DataPoint, RecordPoint])
def test_record_behaves_as_a_frozen_dataclass(cls: Any) -> None:
    a = cls("a", 1.5, ["x"], note="n")
    b = cls("a", 1.5, ("x",), note="other note")  # note: not compared, not hashed
    c = cls("a", 2.5)
    assert dataclasses.is_dataclass(a) and cls.__dataclass_params__.frozen
    assert a.tags == ("x",)
    assert a == b and hash(a) == hash(b) and a != c and (a == ("a", 1.5)) is False
    assert len({a, b, c}) == 2
    assert repr(a) == f"{cls.__qualname__}(name='a', value=1.5, tags=('x',), extra={{}})"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.value = 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        del a.value
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.new_attribute = 1
    assert dataclasses.replace(a, value=9.0) == cls("a", 9.0, ("x",))
    assert dataclasses.asdict(a) == {"name": "a", "value": 1.5, "tags": ("x",), "note": "n",
                                     "extra": {}}
    assert [f.name for f in dataclasses.fields(a)] == ["name", "value", "tags", "note", "extra"]
    assert pickle.loads(pickle.dumps(a)) == a and copy.deepcopy(a) == a
    assert cls.__match_args__ == ("name", "value", "tags", "note", "extra")


def test_record_and_dataclass_agree_field_by_field() -> None:
    """The same values give the same repr (but the class name), equality pattern and hashes."""
    values = [("a", 1.0, ()), ("a", 1.0, ("t",)), ("b", 1.0, ()), ("a", 2.0, ())]
    for v in values:
        for w in values:
            d1, d2, r1, r2 = DataPoint(*v), DataPoint(*w), RecordPoint(*v), RecordPoint(*w)
            assert (d1 == d2) == (r1 == r2)
            assert repr(r1).replace("RecordPoint", "DataPoint") == repr(d1)
        assert hash(RecordPoint(*v)) == hash(DataPoint(*v))  # both hash the same field tuple


def test_record_repr_of_a_cycle_and_a_kept_method() -> None:
    n = Node("root")
    n.children.append(n)
    assert repr(n) == "Node(label='root', children=[...])"

    @record
    class Custom:
        x: int

        def __repr__(self) -> str:
            return "mine"

    assert repr(Custom(1)) == "mine" and Custom(1) == Custom(1)


def test_every_wattwise_record_is_a_frozen_dataclass() -> None:
    """The package's records are frozen dataclasses with the shared methods (the test can fail:
    a record class missing a method, or a plain class under the name, is reported)."""
    found = []
    for mod in pkgutil.walk_packages(wattwise.__path__, "wattwise."):
        if mod.name.split(".")[-1] in ("keras", "keras_data", "lightning", "transformers",
                                       "fabric", "hf_data", "__main__"):
            continue  # adapters need their framework; their records are checked through it
        module = importlib.import_module(mod.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and "__record_compare__" in vars(obj) \
                    and obj.__module__ == module.__name__:
                found.append(obj)
                assert obj.__dataclass_params__.frozen, obj
                assert obj.__hash__ is not None and obj.__eq__ is not object.__eq__, obj
    assert len(found) >= 25, [c.__qualname__ for c in found]
