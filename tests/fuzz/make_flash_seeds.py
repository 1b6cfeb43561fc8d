#!/usr/bin/env python3
"""Writes seed inputs for fuzz_flash into DIR: OVMF's flash probe, variable
writes (program byte by byte, then read array), block erases, status polls,
snapshots and resets in the middle of a command, wide accesses and writes
to the code (the operation codes are fuzz_flash.c's)."""
import os
import struct
import sys

WRITE, READ, PROGRAM, ERASE, COMMAND, ROUNDTRIP, RESTORE, RESET, CODE_WRITE = range(9)
COMMANDS = [0xFF, 0x50, 0x70, 0x10, 0x40, 0x20, 0xD0, 0x90, 0x98, 0x00]
SIZE = {1: 0x00, 2: 0x10, 4: 0x20, 8: 0x30}


def at(offset):
    """An offset in the store as fuzz_flash.c's take_gpa() reads it."""
    return struct.pack("<I", offset + 16)[:3]


def write(offset, data):
    return bytes([WRITE | SIZE[len(data)]]) + at(offset) + data


def read(offset, size=1):
    return bytes([READ | SIZE[size]]) + at(offset)


def command(offset, cmd):
    return bytes([COMMAND]) + at(offset) + bytes([COMMANDS.index(cmd)])


def program(offset, value, alt=False):
    return bytes([PROGRAM | (0x10 if alt else 0)]) + at(offset) + bytes([value])


def erase(offset, confirm=None):
    if confirm is None:
        return bytes([ERASE]) + at(offset)
    return bytes([ERASE | 0x10]) + at(offset) + bytes([confirm])


def variable(offset, data):
    return b"".join(program(offset + i, b) for i, b in enumerate(data)) + command(offset + len(data) - 1, 0xFF)


def roundtrip():
    return bytes([ROUNDTRIP, 0])


probe = read(0) + command(0, 0x50) + read(0) + command(0, 0x70) + read(0) + command(0, 0xFF)
name = "BootOrder".encode("utf-16-le")
seeds = {
    "probe": probe,
    "variable": probe + variable(0x2000, name) + read(0x2000, 8) + read(0x2008, 8),
    "erase": probe + variable(0x3000, b"\x00" * 16) + erase(0x3000) + read(0x3000) + command(0x3000, 0xFF) +
    read(0x3000, 8),
    "bad_confirm": erase(0x4000, 0x00) + read(0x4000) + command(0x4000, 0x50) + command(0, 0x90) + read(0),
    "status_poll": program(0x5000, 0x12) + read(0x5000) * 4 + command(0x5000, 0x70) + read(0x5001) +
    command(0x5000, 0xFF),
    "snapshot": program(0x6000, 0x34) + roundtrip() + read(0x6000) + command(0x6000, 0xFF) + erase(0x6000) +
    roundtrip() + bytes([ROUNDTRIP, 0x81]) + struct.pack("<HBHB", 40, 0x02, 60, 0xFF),
    "reset": bytes([PROGRAM]) + at(0x7000) + bytes([RESET]) + read(0x7000) + erase(0x7000) + bytes([RESET]),
    "wide": write(0x1FFC, b"\x10\x00\x10\x00\x10\x00\x10\x00") + write(0x1FFFC, b"\x10\x00\x10\x00\x10\x00\x10\x00") +
    write(0x20000 - 2, b"\x10\x55") + command(0, 0xFF) + read(0x1FFF8, 8),
    "code": bytes([CODE_WRITE | 0x30]) + b"\x00\x00\x00" + b"\x00" * 8 + bytes([CODE_WRITE]) + b"\xf0\xff\x1d\x90",
    "restore": bytes([RESTORE]) + struct.pack("<H", 2) + b"\xa0\x00",
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(blob)
