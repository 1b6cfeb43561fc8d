#!/usr/bin/env python3
"""Writes seed inputs for fuzz_ahci into DIR: small guests that start ports the way Linux's
ahci driver does and run IDENTIFY, DMA and NCQ reads and writes, TRIM, FLUSH, SMART and log
reads on the disks, IDENTIFY PACKET DEVICE and packet commands (INQUIRY, TEST UNIT READY,
REQUEST SENSE, READ CAPACITY, READ(10), GET EVENT STATUS) on the CD drives, failing commands,
buffers outside RAM, COMRESET, HBA reset, pauses, snapshots, media changes, and HBA reset or
a port stopped while commands run (fuzz_ahci.c
describes the operations)."""
import os
import struct
import sys

ATA = [0xEC, 0xA1, 0xA0, 0x25, 0x35, 0xC8, 0xCA, 0x20, 0x24, 0x30, 0x34, 0xC4, 0xC5, 0x29, 0x39, 0x60,
       0x61, 0x06, 0xE7, 0xEA, 0x2F, 0x47, 0xB0, 0xEF, 0xC6, 0xE5, 0x40, 0x42, 0x90, 0x91, 0x70, 0xE0,
       0xE1, 0xE2, 0xE3, 0xE6, 0x08]
PACKET = [0x00, 0x03, 0x12, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2B, 0x43, 0x46, 0x4A, 0x51, 0x52, 0x5A, 0xA8,
          0xBB, 0xBD]
HDR_ATAPI, HDR_WRITE = 1 << 5, 1 << 6
CLB = {0: 0x0000, 1: 0x0400, 2: 0x0800, 3: 0x0C00}
FB = {0: 0x1000, 1: 0x1100, 2: 0x1200, 3: 0x1300}
DATA = 0x4000


def table_of(port, slot):
    return 0x2000 + port * 0x800 + slot * 0x100 % 0x800


def op_w32(off, v):
    return bytes([0]) + struct.pack("<HI", off, v)


def op_start(port, ie=0xFDC000FF):
    return bytes([2, port]) + struct.pack("<HHI", CLB[port], FB[port], ie)


def op_cmd(port, slot, command, lba=0, count=0, features=0, device=0x40, control=0, flags=0, prds=(), cdb=b"",
           table=None):
    """A command in slot; prds are (address, length) pairs."""
    fis = bytes([features & 0xFF, lba & 0xFF, lba >> 8 & 0xFF, lba >> 16 & 0xFF, device,
                 lba >> 24 & 0xFF, lba >> 32 & 0xFF, lba >> 40 & 0xFF, features >> 8, count & 0xFF, count >> 8,
                 0, control])
    table = table_of(port, slot) if table is None else table
    out = bytes([3, port, slot]) + struct.pack("<HBH", flags, len(prds), table)
    out += bytes([ATA.index(command)]) if command in ATA else bytes([0xFF, command])
    out += fis
    cdb = cdb.ljust(16, b"\0")
    out += bytes([PACKET.index(cdb[0])]) if cdb[0] in PACKET else bytes([0xFF])
    out += cdb[1:]
    for addr, length in prds:
        out += struct.pack("<HBH", length - 1, 0x80 if length > 0 else 0, addr)
    return out


def op_issue(port, ci, sact=0):
    return bytes([4, port]) + struct.pack("<II", sact, ci)


def op_store(addr, data):
    return bytes([5]) + struct.pack("<HB", addr, len(data)) + data


def run(port, slot, command, **kw):
    return op_cmd(port, slot, command, **kw) + op_issue(port, 1 << slot)


def restart(port):
    return op_w32(0x100 + port * 0x80 + 0x18, 0x10) + op_w32(0x100 + port * 0x80 + 0x18, 0x11)


def seed(ops, ram=b""):
    return struct.pack("<H", len(ops)) + ops + ram


def disk_basic():
    return (op_start(0) + run(0, 0, 0xEC, prds=[(DATA, 512)]) +
            run(0, 1, 0x35, lba=5, count=4, flags=HDR_WRITE, prds=[(DATA, 1000), (DATA + 0x1000, 1048)]) +
            run(0, 2, 0x25, lba=5, count=4, prds=[(DATA + 0x2000, 2048)]) +
            run(0, 3, 0xEA) + run(0, 4, 0xEF, features=0x03, count=0x46) + run(0, 5, 0xC6, count=8) +
            run(0, 6, 0x29, lba=1, count=2, prds=[(DATA, 1024)]) + run(0, 7, 0xE5))


def disk_ncq():
    ops = op_start(0)
    for tag in (0, 3, 9):
        ops += op_cmd(0, tag, 0x61, lba=tag * 4, count=tag << 3, features=2, flags=HDR_WRITE,
                      prds=[(DATA + tag * 0x400, 1024)])
    ops += op_issue(0, 1 | 1 << 3 | 1 << 9, sact=1 | 1 << 3 | 1 << 9)
    for tag in (1, 2):
        ops += op_cmd(0, tag, 0x60, lba=tag * 4, count=tag << 3, features=2, prds=[(DATA + 0x3000, 1024)])
    ops += op_issue(0, 6, sact=6)
    # A queued read past the end, then the NCQ error log.
    ops += op_cmd(0, 4, 0x60, lba=127, count=4 << 3, features=2, prds=[(DATA, 1024)]) + op_issue(0, 16, sact=16)
    ops += restart(0) + run(0, 0, 0x2F, lba=0x10, count=1, prds=[(DATA, 512)])
    return ops


def disk_trim():
    ranges = struct.pack("<QQ", 8 | 16 << 48, 120 | 8 << 48)
    return (op_start(0) + op_store(DATA + 0x800, ranges) +
            run(0, 0, 0x06, count=1, features=1, flags=HDR_WRITE, prds=[(DATA + 0x800, 512)]) +
            restart(0) + run(0, 1, 0xB0, features=0xD0, lba=0xC24F00, prds=[(DATA, 512)]) +
            run(0, 2, 0xB0, features=0xDA, lba=0xC24F00) + run(0, 3, 0x47, lba=0, count=1, prds=[(DATA, 512)]))


def disk_4k():
    return (op_start(2) + run(2, 0, 0xEC, prds=[(DATA, 512)]) +
            run(2, 1, 0x35, lba=3, count=1, flags=HDR_WRITE, prds=[(DATA, 4096)]) +
            run(2, 2, 0x25, lba=3, count=1, prds=[(DATA + 0x1000, 4096)]) + run(2, 3, 0x42, lba=15, count=2))


def errors():
    return (op_start(0) + run(0, 0, 0x25, lba=200, count=1, prds=[(DATA, 512)]) +
            run(0, 1, 0x25, lba=0, count=1, prds=[(DATA, 512)]) + restart(0) +
            run(0, 2, 0x25, lba=0, count=1, prds=[(0xBF00, 512)]) + restart(0) +
            run(0, 3, 0x25, lba=0, count=8, prds=[(DATA, 512)]) + restart(0) +
            run(0, 4, 0x25, table=0xA000) + restart(0) +
            op_w32(0x100 + 0x00, 0x7C00) + op_issue(0, 1) + bytes([6, 0, 0, 7, 0, 7, 1]))


def cd():
    return (op_start(1) + run(1, 0, 0xEC, prds=[(DATA, 512)]) + restart(1) +
            run(1, 1, 0xA1, prds=[(DATA, 512)]) +
            run(1, 2, 0xA0, count=0, lba=0x6000, flags=HDR_ATAPI, cdb=bytes([0x12, 0, 0, 0, 36]),
                prds=[(DATA, 96)]) +
            run(1, 3, 0xA0, flags=HDR_ATAPI, cdb=bytes([0x00])) + restart(1) +
            run(1, 4, 0xA0, flags=HDR_ATAPI, cdb=bytes([0x03, 0, 0, 0, 18]), prds=[(DATA, 18)]) +
            run(1, 5, 0xA0, features=1, flags=HDR_ATAPI, cdb=bytes([0x25]), prds=[(DATA, 8)]) +
            run(1, 6, 0xA0, features=1, flags=HDR_ATAPI, cdb=bytes([0x28, 0, 0, 0, 0, 2, 0, 0, 3]),
                prds=[(DATA, 2048), (DATA + 0x1000, 4096)]) +
            run(1, 7, 0xA0, flags=HDR_ATAPI, cdb=bytes([0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8]), prds=[(DATA, 8)]) +
            run(1, 8, 0xA0, flags=HDR_ATAPI, cdb=bytes([0x43, 0, 0, 0, 0, 0, 0, 0, 0xFF]), prds=[(DATA, 256)]) +
            bytes([11, 0, 11, 2]) + run(1, 9, 0xA0, flags=HDR_ATAPI, cdb=bytes([0x00])))


def empty_cd():
    return (op_start(3) + run(3, 0, 0xA1, prds=[(DATA, 512)]) +
            run(3, 1, 0xA0, flags=HDR_ATAPI, cdb=bytes([0x00])) + restart(3) +
            bytes([11, 3, 11, 7]) + run(3, 2, 0xA0, flags=HDR_ATAPI, cdb=bytes([0x1B, 0, 0, 0, 2])))


def snapshot():
    return (op_start(0) + op_start(1) + bytes([8]) +
            op_cmd(0, 0, 0x35, lba=9, count=1, flags=HDR_WRITE, prds=[(DATA, 512)]) + op_issue(0, 1) +
            op_cmd(1, 0, 0xA1, prds=[(DATA + 0x1000, 512)]) + op_issue(1, 1) +
            bytes([9, 0, 8]) + run(0, 1, 0x25, lba=9, count=1, prds=[(DATA + 0x2000, 512)]) +
            bytes([9, 0x81, 0x10, 0, 0x55]))


def race():
    """Commands on every port, then HBA reset or a port stopped while they run (op 13)."""
    ops = b"".join(op_start(p) for p in range(4))
    for slot in range(8):
        ops += op_cmd(0, slot, 0x25, lba=slot * 8, count=8, prds=[(DATA, 4096)])
        ops += op_cmd(1, slot, 0xA1, prds=[(DATA + 0x1000, 512)])
        ops += op_cmd(2, slot, 0x25, lba=slot, count=1, prds=[(DATA + 0x2000, 4096)])
        ops += op_cmd(3, slot, 0xA1, prds=[(DATA + 0x3000, 512)])
    ops += bytes([13, 4]) + struct.pack("<IIII", 0xFF, 0xFF, 0xFF, 0xFF)
    ops += b"".join(op_start(p) for p in range(4))
    ops += bytes([13, 1]) + struct.pack("<IIII", 0xFF, 0xFF, 0xFF, 0xFF)
    return ops


def control():
    return (op_start(0) + bytes([12, 0, 1, 12, 0, 0]) + op_start(1) + bytes([12, 1, 1, 12, 1, 0]) +
            run(0, 0, 0xEC, prds=[(DATA, 512)]))


seeds = {
    "disk": disk_basic(),
    "ncq": disk_ncq(),
    "trim": disk_trim(),
    "disk4k": disk_4k(),
    "errors": errors(),
    "cd": cd(),
    "empty_cd": empty_cd(),
    "snapshot": snapshot(),
    "control": control(),
    "race": race(),
}

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, ops in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(seed(ops))
