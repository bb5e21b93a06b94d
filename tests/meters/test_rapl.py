"""RaplMeter against powercap sysfs trees written under a temporary folder."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from meter_test_helpers import set_energy, write_zone

import wattwise
from wattwise.errors import ConfigurationError, MeterReadError, MeterUnavailableError
from wattwise.meters.rapl import RaplMeter

HUGE = 3600.0  # poll interval that keeps the background thread out of deterministic tests


def test_intel_tree_domains_and_no_double_counting(intel_tree: Path) -> None:
    with RaplMeter(intel_tree, poll_interval_s=HUGE) as m:
        assert m.domains == ("cpu:package-0", "cpu:dram-0", "cpu:package-1", "cpu:dram-1")
        assert m.read().joules == {d: 0.0 for d in m.domains}
        set_energy(intel_tree / "intel-rapl:0", 1_000_000 + 2_500_000)
        set_energy(intel_tree / "intel-rapl:0" / "intel-rapl:0:2", 2_000_000 + 250_000)
        # core/uncore and the mmio duplicate move too, but must not be counted
        set_energy(intel_tree / "intel-rapl:0" / "intel-rapl:0:0", 9_000_000)
        set_energy(intel_tree / "intel-rapl-mmio:0", 99_000_000)
        r = m.read()
        assert r.joules["cpu:package-0"] == pytest.approx(2.5)
        assert r.joules["cpu:dram-0"] == pytest.approx(0.25)
        assert r.joules["cpu:package-1"] == 0.0
        assert r.total_joules == pytest.approx(2.75)
        assert r.estimated is False and r.approximate_domains == frozenset()
        assert m.scope == "node" and m.name == "rapl" and m.update_period_s == pytest.approx(0.001)
        d = m.describe()
        assert d["domains"] == list(m.domains)
        assert any("node-wide" in n for n in d["notes"])  # type: ignore[union-attr]


def test_psys_opt_in(intel_tree: Path) -> None:
    with RaplMeter(intel_tree, include_psys=True, poll_interval_s=HUGE) as m:
        assert "cpu:psys" in m.domains
        set_energy(intel_tree / "intel-rapl:2", 9_000_000 + 4_000_000)
        assert m.read().joules["cpu:psys"] == pytest.approx(4.0)
    with RaplMeter(intel_tree, poll_interval_s=HUGE) as m:
        assert "cpu:psys" not in m.domains


def test_amd_style_package_only(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "package-0", energy_uj=10)
    with RaplMeter(root, poll_interval_s=HUGE) as m:
        assert m.domains == ("cpu:package-0",)  # DRAM missing: not invented
        set_energy(root / "intel-rapl:0", 10 + 3_000_000)
        assert m.read().joules == {"cpu:package-0": pytest.approx(3.0)}


def test_subzones_found_as_top_level_links(tmp_path: Path) -> None:
    """Real sysfs lists subzones both inside the package folder and at the top level."""
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "package-0")
    write_zone(root / "intel-rapl:0:0", "dram", energy_uj=5)
    with RaplMeter(root, poll_interval_s=HUGE) as m:
        assert m.domains == ("cpu:package-0", "cpu:dram-0")


def test_package_index_comes_from_name_not_folder(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "package-1")
    write_zone(root / "intel-rapl:0" / "intel-rapl:0:0", "dram")
    write_zone(root / "intel-rapl:1", "package-0")
    with RaplMeter(root, poll_interval_s=HUGE) as m:
        assert m.domains == ("cpu:package-1", "cpu:dram-1", "cpu:package-0")


def test_wrap_is_unwrapped_by_polls(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    z = write_zone(root / "intel-rapl:0", "package-0", energy_uj=900, max_range_uj=1000)
    with RaplMeter(root, poll_interval_s=HUGE) as m:
        # counter: 900 -> 950 -> (wrap) 100 -> 800 -> (wrap) 300 : 50 + 150 + 700 + 500 µJ
        for v in (950, 100, 800, 300):
            set_energy(z, v)
            m._poll()
        assert m.read().joules["cpu:package-0"] == pytest.approx(1400e-6)
        assert m.wraps == {"cpu:package-0": 2}
        # read() itself reads the file: a wrap between the last poll and read() counts too
        set_energy(z, 200)
        assert m.read().joules["cpu:package-0"] == pytest.approx(2300e-6)


def test_background_thread_catches_wraps_between_reads(tmp_path: Path) -> None:
    """A gap between reads that spans several wraps still counts every joule."""
    root = tmp_path / "powercap"
    z = write_zone(root / "intel-rapl:0", "package-0", energy_uj=0, max_range_uj=1000)
    with RaplMeter(root, poll_interval_s=0.002) as m:
        assert m.poll_interval_s == pytest.approx(0.002)
        expected_uj = 0
        value = 0
        for _ in range(5):  # 5 wraps, no read() in between
            for step in (600, 600):
                value = (value + step) % 1000
                expected_uj += step
                set_energy(z, value)
                deadline = time.monotonic() + 10.0
                while m._zones[0].last_uj != value:  # wait until the thread has seen it
                    assert time.monotonic() < deadline, "poll thread did not read the counter"
                    time.sleep(0.001)
        assert m.read().joules["cpu:package-0"] == pytest.approx(expected_uj * 1e-6)
        assert m.wraps["cpu:package-0"] >= 5


def test_auto_poll_interval_from_wrap_period(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "package-0", max_range_uj=262_143_328_850)  # 262 kJ
    with RaplMeter(root) as m:
        # 262 kJ at 1000 W wraps after 262 s; a quarter of that
        assert m.poll_interval_s == pytest.approx(262.143328850 / 4, rel=1e-6) or (
            m.poll_interval_s == 60.0
        )
        assert m.poll_interval_s <= 60.0
        assert m.describe()["poll_interval_s"] == m.poll_interval_s


def test_missing_root_and_no_package(tmp_path: Path) -> None:
    with pytest.raises(MeterUnavailableError, match="no powercap folder"):
        RaplMeter(tmp_path / "nope")
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl-mmio:0", "package-0")
    write_zone(root / "intel-rapl:0", "psys")
    with pytest.raises(MeterUnavailableError, match="no RAPL package zone"):
        RaplMeter(root)


def test_missing_max_range_is_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "package-0", max_range_uj=None)
    with pytest.raises(MeterUnavailableError, match="max_energy_range_uj"):
        RaplMeter(root)


def test_unreadable_energy_file_is_unavailable(tmp_path: Path) -> None:
    """energy_uj that is a folder: opening works, reading fails (EISDIR)."""
    root = tmp_path / "powercap"
    z = write_zone(root / "intel-rapl:0", "package-0", energy_uj=None)
    (z / "energy_uj").mkdir()
    with pytest.raises(MeterUnavailableError, match="cannot read an energy value") as ei:
        RaplMeter(root)
    assert "RaplMeter(root=" in str(ei.value)


def test_permission_error_from_opener_explains_the_rule(intel_tree: Path) -> None:
    def opener(path: str) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    with pytest.raises(MeterUnavailableError) as ei:
        RaplMeter(intel_tree, opener=opener)
    msg = str(ei.value)
    assert "CVE-2020-8694" in msg and "root" in msg and "Fix:" in msg and "udev" in msg
    assert isinstance(ei.value.__cause__, PermissionError)


def test_permission_error_for_real_as_non_root(tmp_path: Path) -> None:
    """A real root-only energy_uj (mode 0400, owner root) opened by an unprivileged user."""
    base = Path(tempfile.mkdtemp(prefix="wattwise-rapl-perm-"))
    try:
        root = base / "powercap"
        write_zone(root / "intel-rapl:0", "package-0", energy_uj=5)
        (root / "intel-rapl:0" / "energy_uj").chmod(0o400)
        for d in (base, root, root / "intel-rapl:0"):
            d.chmod(0o755)
        code = (
            "import sys\n"
            "from wattwise.errors import MeterUnavailableError\n"
            "from wattwise.meters.rapl import RaplMeter\n"
            "try:\n"
            f"    RaplMeter({str(root)!r})\n"
            "except MeterUnavailableError as e:\n"
            "    print(e); sys.exit(3)\n"
            "sys.exit(0)\n"
        )
        if os.geteuid() != 0:
            proc = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=False
            )
        else:
            # as root, chmod does not block reads: run the check as 'nobody' in a child
            proc = _run_as_nobody(code)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "permission denied" in proc.stdout and "CVE-2020-8694" in proc.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    try:
        import pwd

        pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        pytest.skip("running as root and no 'nobody' user to drop to")
    src = str(Path(wattwise.__file__).resolve().parents[1])
    env = {"PYTHONPATH": src, "PATH": os.environ.get("PATH", "")}
    for python in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if not python:
            continue
        try:
            probe = subprocess.run(
                [python, "-c", "import wattwise.meters.rapl"],
                user="nobody",
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return subprocess.run(
                [python, "-c", code],
                user="nobody",
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
    pytest.skip("no Python interpreter that 'nobody' can run with wattwise importable")


def test_read_failure_raises_meter_read_error_and_close_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    z = write_zone(root / "intel-rapl:0", "package-0", energy_uj=5)
    m = RaplMeter(root, poll_interval_s=HUGE)
    set_energy(z, 0)
    (z / "energy_uj").write_text("garbage\n")
    with pytest.raises(MeterReadError, match="energy_uj"):
        m.read()
    m.close()
    m.close()
    with pytest.raises(MeterReadError, match="closed"):
        m.read()
    assert not m._poller.is_alive()


def test_bad_arguments(intel_tree: Path) -> None:
    for bad in (0, -1.0, "1", True, float("nan")):
        with pytest.raises(ConfigurationError, match="poll_interval_s"):
            RaplMeter(intel_tree, poll_interval_s=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="include_psys"):
        RaplMeter(intel_tree, include_psys="yes")  # type: ignore[arg-type]


def test_fds_are_held_and_closed(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    z = write_zone(root / "intel-rapl:0", "package-0", energy_uj=5)
    m = RaplMeter(root, poll_interval_s=HUGE)
    fd = m._zones[0].fd
    os.fstat(fd)  # open
    set_energy(z, 1_000_005)  # same inode: the held fd sees it
    assert m.read().joules["cpu:package-0"] == pytest.approx(1.0)
    m.close()
    with pytest.raises(OSError):
        os.fstat(fd)


@pytest.mark.skipif(not Path("/sys/class/powercap/intel-rapl:0").exists(), reason="no real RAPL")
def test_real_rapl_if_present() -> None:  # pragma: no cover - hardware dependent
    try:
        m = RaplMeter()
    except MeterUnavailableError as e:
        pytest.skip(str(e))
    with m:
        a = m.read()
        time.sleep(0.05)
        b = m.read()
        assert b.joules["cpu:package-0"] > a.joules["cpu:package-0"]
