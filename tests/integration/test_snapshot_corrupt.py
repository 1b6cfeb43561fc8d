"""A broken snapshot is refused with a one-line error naming the problem and
status 4: truncation, bit flips in every record type, unknown records,
a newer major version, a device section of a version hyve does not read,
a memory size that does not match."""
import os
import struct
import subprocess

import pytest
import xxhash

from conftest import run_hyve
import snapshot_file
from test_snapshot import POWERED_OFF, hyvectl, start_counter

ERROR = 4


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    g = start_counter("corrupt-src", mem="128M")
    r = hyvectl("corrupt-src", f"--suspend={d / 'good.snap'}")
    assert r.returncode == 0, r.stderr
    assert g.wait_exit(60) == POWERED_OFF
    header, records = snapshot_file.read(d / "good.snap")
    return dict(dir=d, path=d / "good.snap", records={r["name"]: r for r in records})


def variant(snap, name):
    path = snap["dir"] / name
    subprocess.run(["cp", "--sparse=always", str(snap["path"]), str(path)], check=True)
    return path


def restore_fails(path, *fragments, extra=()):
    r = run_hyve(["-r", path, "-l", "com1,file=/dev/null", "-o", "control.socket=off", *extra, "corrupt"], timeout=120)
    assert r.returncode == ERROR, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("hyve: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def flip(path, offset, bit=0):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ (1 << bit)]))


def rewrite_header(data, **changes):
    fields = list(snapshot_file.HEADER.unpack_from(data, 0))
    if "major" in changes:
        fields[1] = changes["major"]
    if "size" in changes:
        fields[8] = changes["size"]
    head = snapshot_file.HEADER.pack(*fields[:-1], 0)[:56]
    data[0:64] = head + struct.pack("<Q", xxhash.xxh3_64_intdigest(head))


@pytest.mark.parametrize("where", ["empty", "mid-header", "after-header", "in-manifest", "in-vcpu",
                                   "in-ram", "last-byte"])
def test_truncated(snap, where):
    recs = snap["records"]
    size = os.path.getsize(snap["path"])
    cut = {"empty": 0, "mid-header": 30, "after-header": 64,
           "in-manifest": recs["manifest"]["payload_offset"] + 10,
           "in-vcpu": recs["vcpu.0"]["payload_offset"] + 100,
           "in-ram": recs["ram.0"]["payload_offset"] + (8 << 20), "last-byte": size - 1}[where]
    path = variant(snap, f"trunc-{where}.snap")
    os.truncate(path, cut)
    restore_fails(path, "trunc")


@pytest.mark.parametrize("record", ["manifest", "vcpu.0", "vm.irqchip", "vm.pit", "vm.clock", "dev.lpc.com1",
                                    "dev.lpc.rtc", "dev.platform.acpi-pm", "end"])
def test_bit_flip_in_payload(snap, record):
    rec = snap["records"][record]
    path = variant(snap, f"flip-{record}.snap")
    flip(path, rec["payload_offset"] + rec["length"] // 2, 3)
    restore_fails(path, record, "checksum")


@pytest.mark.parametrize("record", ["manifest", "vcpu.0", "ram.0", "end"])
def test_bit_flip_in_record_header(snap, record):
    path = variant(snap, f"hflip-{record}.snap")
    flip(path, snap["records"][record]["offset"] + 17, 5)  # inside the payload length
    restore_fails(path, "checksum")


def test_bit_flip_in_ram_eager(snap):
    rec = snap["records"]["ram.0"]
    path = variant(snap, "flip-ram-eager.snap")
    flip(path, rec["payload_offset"] + (1 << 20) + 123, 1)  # inside the kernel image
    restore_fails(path, "ram.0", "checksum", extra=["--eager"])


def test_bit_flip_in_ram_lazy_stops_guest(snap):
    rec = snap["records"]["ram.0"]
    path = variant(snap, "flip-ram-lazy.snap")
    flip(path, rec["payload_offset"] + (1 << 20) + 123, 1)
    r = run_hyve(["-r", path, "-l", "com1,file=/dev/null", "-o", "control.socket=off", "corrupt-lazy"], timeout=120)
    assert r.returncode == ERROR
    assert "ram.0" in r.stderr and "checksum" in r.stderr


def test_bad_magic(snap):
    path = variant(snap, "magic.snap")
    flip(path, 0, 0)
    restore_fails(path, "bad magic")


def test_newer_major_version_refused(snap):
    path = variant(snap, "major.snap")
    data = bytearray(open(path, "rb").read())
    rewrite_header(data, major=2)
    open(path, "wb").write(data)
    restore_fails(path, "newer")


@pytest.mark.parametrize("version,word", [(2, "newer"), (0, "older")])
def test_device_section_of_a_version_hyve_does_not_read(snap, version, word):
    """The reader checks each device section's version against what that model reads (the UART:
    version 1 only) before the device sees it."""
    _, records = snapshot_file.read(snap["path"])
    rec = next(r for r in records if r["name"] == "dev.lpc.com1")
    rec["version"] = version
    path = snap["dir"] / f"uart-version-{version}.snap"
    snapshot_file.write(path, records, snap["path"])
    restore_fails(path, f"record dev.lpc.com1: section version {version} is {word} than this hyve reads (1)")


def insert_record(snap, name, flags, filename):
    """Inserts a 4096-byte record after the manifest (page multiple: RAM stays aligned)."""
    data = bytearray(open(snap["path"], "rb").read())
    man = snap["records"]["manifest"]
    at = (man["payload_offset"] + man["length"] + 7) & ~7
    poff = (40 + len(name) + 7) & ~7
    length = 4096 - poff
    payload = b"\xa1\x61x\x59" + struct.pack(">H", length - 6) + bytes(length - 6)  # {"x": h'00..'}
    head = struct.pack("<4sHHIIQQ", b"HREC", flags, len(name), 1, poff, len(payload),
                       xxhash.xxh3_64_intdigest(payload))
    head += struct.pack("<Q", xxhash.xxh3_64_intdigest(head + name.encode()))
    rec = head + name.encode() + bytes(poff - 40 - len(name)) + payload
    assert len(rec) == 4096
    data[at:at] = rec
    rewrite_header(data, size=len(data))
    path = snap["dir"] / filename
    open(path, "wb").write(data)
    return path


def test_unknown_mandatory_record_refused(snap):
    path = insert_record(snap, "future.feature", 0, "mandatory.snap")
    restore_fails(path, "unknown mandatory record 'future.feature'")


def test_unknown_optional_record_skipped(snap):
    path = insert_record(snap, "future.hint", 1, "optional.snap")
    r = run_hyve(["-r", path, "-l", "com1,stdio", "-o", "control.socket=off", "--print-config"], timeout=60)
    assert r.returncode == 0, r.stderr
    assert "memory.size=" in r.stdout


def test_memory_size_mismatch(snap):
    restore_fails(snap["path"], "memory size mismatch", extra=["-m", "256M"])


def test_not_a_snapshot(tmp_path):
    junk = tmp_path / "junk.snap"
    junk.write_bytes(b"hello" * 100)
    restore_fails(junk, "bad magic")


def test_missing_snapshot():
    restore_fails("/nonexistent/x.snap", "/nonexistent/x.snap", "No such file")
