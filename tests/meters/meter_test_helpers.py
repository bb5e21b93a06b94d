"""Helpers for meter tests: powercap zone folders written like sysfs."""

from __future__ import annotations

import os
from pathlib import Path


def write_zone(
    folder: Path, name: str, energy_uj: int | None = 0, max_range_uj: int | None = 262143328850
) -> Path:
    """Write one powercap zone folder (files end in a newline, as in sysfs)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "name").write_text(name + "\n")
    if energy_uj is not None:
        (folder / "energy_uj").write_text(f"{energy_uj}\n")
    if max_range_uj is not None:
        (folder / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return folder


def set_energy(folder: Path, energy_uj: int) -> None:
    """Overwrite a zone's counter in place with one pwrite (same inode, so held fds see it).

    Zero-padded to a fixed width so that a concurrent reader never sees a half-written or
    truncated value (sysfs values change atomically too).
    """
    fd = os.open(folder / "energy_uj", os.O_WRONLY)
    try:
        os.pwrite(fd, f"{energy_uj:020d}\n".encode(), 0)
    finally:
        os.close(fd)
