"""Helpers for meter tests: powercap zone folders written like sysfs."""

from __future__ import annotations

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
    """Overwrite a zone's counter in place (same inode, so held fds see the new value)."""
    with open(folder / "energy_uj", "r+") as f:
        f.seek(0)
        f.truncate()
        f.write(f"{energy_uj}\n")
