"""Compatibility: snapshots written by every released format version (tests/fixtures/, made by
tests/fixtures/make-snapshot-fixture VERSION) keep restoring."""
import os
import subprocess

import pytest

from conftest import REPO, RUNDIR, Guest, run_hyve
import snapshot_file

FIXTURES = REPO / "tests" / "fixtures"
# Format 1.1 left the display's password out of the file (config.omitted): it is given again.
PASSWORD = "Zq7-pw11"


def decompress(tmp_path_factory, version):
    out = tmp_path_factory.mktemp("compat") / f"snapshot-v{version}.snap"
    subprocess.run(["zstd", "-q", "-d", "--sparse", str(FIXTURES / f"snapshot-v{version}.snap.zst"), "-o", str(out)],
                   check=True)
    return out


@pytest.fixture(scope="module")
def fixture_1_0(tmp_path_factory):
    return decompress(tmp_path_factory, "1.0")


@pytest.fixture(scope="module")
def fixture_1_1(tmp_path_factory):
    return decompress(tmp_path_factory, "1.1")


def host_vendor():
    for line in open("/proc/cpuinfo"):
        if line.startswith("vendor_id"):
            return line.split(":")[1].strip()
    return ""


def restore_counts_on(snap, *args):
    """Restores snap and checks that the counter guest continues where it was suspended."""
    _, records = snapshot_file.read(snap)
    saved_vendor = records[0]["payload"]["cpu"]["vendor"]
    argv = ["-r", snap, "-l", "com1,stdio", "-o", "control.socket=off", *args, "compat"]
    if saved_vendor != host_vendor():
        # Another CPU vendor must be refused cleanly, naming the mismatch.
        r = run_hyve(argv)
        assert r.returncode == 4 and "CPU vendor mismatch" in r.stderr
        return
    g = Guest(argv)
    try:
        m = g.wait_for(r"COUNTER (\d+)\r?\n(.|\n)*COUNTER (\d+)\r?\n", timeout=60)
        # The fixtures were suspended just after COUNTER 20..23 had been printed.
        assert 20 <= int(m.group(1)) <= 26
        assert int(m.group(3)) == int(m.group(1)) + 1
    finally:
        g.kill()


def test_fixture_is_format_1_0(fixture_1_0):
    header, records = snapshot_file.read(fixture_1_0)
    assert (header["major"], header["minor"]) == (1, 0)
    manifest = records[0]["payload"]
    assert manifest["memory"]["size"] == 128 << 20 and manifest["vcpus"] == 1


def test_fixture_1_0_restores_and_counter_continues(fixture_1_0):
    restore_counts_on(fixture_1_0)


def test_fixture_is_format_1_1_without_its_password(fixture_1_1):
    header, records = snapshot_file.read(fixture_1_1)
    assert (header["major"], header["minor"]) == (1, 1)
    names = [r["name"] for r in records]
    assert "config.omitted" in names
    assert open(fixture_1_1, "rb").read().find(PASSWORD.encode()) == -1


def test_fixture_1_1_needs_its_password(fixture_1_1):
    vnc = os.path.join(RUNDIR, "compat-1.1.vnc")
    r = run_hyve(["-r", fixture_1_1, "-l", "com1,stdio", "-o", "control.socket=off",
                  "-o", f"pci.0.5.0.unix={vnc}", "compat"])
    assert r.returncode == 4 and "pci.0.5.0.password" in r.stderr, r.stderr


def test_fixture_1_1_restores_and_counter_continues(fixture_1_1):
    vnc = os.path.join(RUNDIR, "compat-1.1.vnc")
    if os.path.exists(vnc):
        os.unlink(vnc)
    restore_counts_on(fixture_1_1, "-o", f"pci.0.5.0.unix={vnc}", "-o", f"pci.0.5.0.password={PASSWORD}")


@pytest.mark.parametrize("version,args", [
    ("1.0", []),
    ("1.1", ["-o", "pci.0.5.0.unix=/tmp/compat-print.vnc", "-o", f"pci.0.5.0.password={PASSWORD}"]),
])
def test_fixtures_keep_the_legacy_layout(version, args, fixture_1_0, fixture_1_1):
    """Snapshots from before platform.layout existed were taken with hyve's old memory map (RAM up to
    3 GiB, ECAM at 0xE0000000, 1275:xxxx ids): they restore with it, and cannot be made to use another."""
    snap = fixture_1_0 if version == "1.0" else fixture_1_1
    argv = ["-r", snap, "-l", "com1,stdio", "-o", "control.socket=off", *args]
    r = run_hyve([*argv, "--print-config", "compat"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert "platform.layout=legacy" in r.stdout.splitlines(), r.stdout
    r = run_hyve([*argv, "-o", "platform.layout=q35", "compat"], timeout=60)
    assert r.returncode == 4 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "platform.layout=q35" in r.stderr and "legacy layout" in r.stderr, r.stderr
