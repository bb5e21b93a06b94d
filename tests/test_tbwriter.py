"""Tests of wattwise.tbwriter: files read back with TensorBoard's own reader."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from wattwise.errors import ConfigurationError
from wattwise.tbwriter import EventFileWriter, crc32c, masked_crc32c


def _read(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_crc32c_known_vectors() -> None:
    # RFC 3720 B.4 test vectors for CRC-32C.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43


def test_masked_crc_matches_tensorboard() -> None:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as tb_masked

    for data in (b"", b"a", b"123456789", bytes(range(256))):
        assert masked_crc32c(data) == tb_masked(data)


def test_scalars_read_back(tmp_path: Path) -> None:
    with EventFileWriter(tmp_path) as w:
        w.add_scalar("energy_joules", 12.5, step=0)
        w.add_scalar("energy_joules", 7.25, step=1)
        w.add_scalar("energy_joules_per_sample", 1.25, step=0)
        w.add_scalar("big_step", 3.0, step=2**40)
    assert w.path is not None
    assert w.path.name.startswith("events.out.tfevents.") and w.path.name.endswith(".wattwise")
    scalars = _read(tmp_path)
    assert scalars["energy_joules"] == [(0, 12.5), (1, 7.25)]
    assert scalars["energy_joules_per_sample"] == [(0, 1.25)]
    assert scalars["big_step"] == [(2**40, 3.0)]


def test_record_framing(tmp_path: Path) -> None:
    with EventFileWriter(tmp_path) as w:
        w.add_scalar("x", 1.0, step=3)
    assert w.path is not None
    data = w.path.read_bytes()
    n_records = 0
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        (hcrc,) = struct.unpack_from("<I", data, pos + 8)
        assert hcrc == masked_crc32c(data[pos:pos + 8])
        payload = data[pos + 12:pos + 12 + length]
        (dcrc,) = struct.unpack_from("<I", data, pos + 12 + length)
        assert dcrc == masked_crc32c(payload)
        pos += 16 + length
        n_records += 1
    assert pos == len(data)
    assert n_records == 2  # file_version event + one scalar


def test_no_file_before_first_write(tmp_path: Path) -> None:
    w = EventFileWriter(tmp_path / "sub")
    assert not (tmp_path / "sub").exists()
    w.close()
    assert not (tmp_path / "sub").exists()
    with pytest.raises(ValueError, match="closed"):
        w.add_scalar("x", 1.0, 0)


def test_flush_every_buffers(tmp_path: Path) -> None:
    w = EventFileWriter(tmp_path, flush_every=3)
    w.add_scalar("x", 1.0, 0)
    w.add_scalar("x", 2.0, 1)
    assert w.path is None
    w.add_scalar("x", 3.0, 2)
    assert w.path is not None
    w.close()
    assert _read(tmp_path)["x"] == [(0, 1.0), (1, 2.0), (2, 3.0)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tag": "", "value": 1.0, "step": 0}, "tag=''"),
        ({"tag": "x", "value": float("nan"), "step": 0}, "value=nan"),
        ({"tag": "x", "value": None, "step": 0}, "value=None"),
        ({"tag": "x", "value": 1.0, "step": -1}, "step=-1"),
    ],
)
def test_bad_scalars(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    w = EventFileWriter(tmp_path)
    with pytest.raises(ConfigurationError, match=match):
        w.add_scalar(**kwargs)  # type: ignore[arg-type]


def test_bad_constructor_args() -> None:
    with pytest.raises(ConfigurationError, match="log_dir=None"):
        EventFileWriter(None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="flush_every=0"):
        EventFileWriter("x", flush_every=0)


def test_text_reads_back_as_a_text_plugin_entry(tmp_path: Path) -> None:
    """add_text writes what TensorBoard's Text tab shows: a string tensor under the text plugin."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    with EventFileWriter(tmp_path) as w:
        w.add_scalar("energy_joules", 1.0, step=0)
        w.add_text("wattwise/measurement", "ESTIMATED by codecarbon (no counter) – µ", step=3)
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    assert acc.Tags()["tensors"] == ["wattwise/measurement"]
    assert acc.Tags()["scalars"] == ["energy_joules"]
    assert acc.PluginTagToContent("text") == {"wattwise/measurement": b""}
    (event,) = acc.Tensors("wattwise/measurement")
    assert event.step == 3
    value = tensor_util.make_ndarray(event.tensor_proto)
    assert value.shape == () and value.item().decode() == "ESTIMATED by codecarbon (no counter) – µ"


@pytest.mark.parametrize(
    "kwargs, match",
    [({"tag": "", "text": "x"}, "tag=''"), ({"tag": "t", "text": 3}, "text=3"),
     ({"tag": "t", "text": "x", "step": -1}, "step=-1")],
)
def test_text_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with EventFileWriter(tmp_path) as w, pytest.raises(ConfigurationError, match=match):
        w.add_text(**kwargs)  # type: ignore[arg-type]
