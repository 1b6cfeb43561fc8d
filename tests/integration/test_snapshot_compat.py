"""Compatibility: a snapshot written by format 1.0 (tests/fixtures/, made by
tests/fixtures/make-snapshot-fixture) keeps restoring."""
import subprocess

import pytest

from conftest import REPO, Guest, run_hyve
import snapshot_file

FIXTURE = REPO / "tests" / "fixtures" / "snapshot-v1.0.snap.zst"


@pytest.fixture(scope="module")
def fixture_snap(tmp_path_factory):
    out = tmp_path_factory.mktemp("compat") / "snapshot-v1.0.snap"
    subprocess.run(["zstd", "-q", "-d", "--sparse", str(FIXTURE), "-o", str(out)], check=True)
    return out


def host_vendor():
    for line in open("/proc/cpuinfo"):
        if line.startswith("vendor_id"):
            return line.split(":")[1].strip()
    return ""


def test_fixture_is_format_1_0(fixture_snap):
    header, records = snapshot_file.read(fixture_snap)
    assert (header["major"], header["minor"]) == (1, 0)
    manifest = records[0]["payload"]
    assert manifest["memory"]["size"] == 128 << 20 and manifest["vcpus"] == 1


def test_fixture_restores_and_counter_continues(fixture_snap):
    _, records = snapshot_file.read(fixture_snap)
    saved_vendor = records[0]["payload"]["cpu"]["vendor"]
    if saved_vendor != host_vendor():
        # Another CPU vendor must be refused cleanly, naming the mismatch.
        r = run_hyve(["-r", fixture_snap, "-l", "com1,stdio", "-o", "control.socket=off", "compat"])
        assert r.returncode == 4 and "CPU vendor mismatch" in r.stderr
        return
    g = Guest(["-r", fixture_snap, "-l", "com1,stdio", "-o", "control.socket=off", "compat"])
    try:
        m = g.wait_for(r"COUNTER (\d+)\r?\n(.|\n)*COUNTER (\d+)\r?\n", timeout=60)
        # The fixture was suspended just after COUNTER 20..23 had been printed.
        assert 20 <= int(m.group(1)) <= 26
        assert int(m.group(3)) == int(m.group(1)) + 1
    finally:
        g.kill()
