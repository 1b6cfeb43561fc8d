#!/usr/bin/env python3
"""Writes seed inputs for fuzz_i8042 into DIR: what Linux's i8042, atkbd and
psmouse drivers do at boot, host key presses and pointer moves, scan code
set and LED changes, and snapshot round trips in the middle (the operation
codes are fuzz_i8042.c's)."""
import os
import struct
import sys

W_DATA, W_CMD, R_DATA, R_CMD = 0x00, 0x01, 0x02, 0x03
KEY, POINTER, RUNNING, ROUNDTRIP, RESTORE, RESET, CMD_DATA, AUX = 6, 7, 8, 9, 10, 11, 12, 13


def wdata(b):
    return bytes([W_DATA, b])


def wcmd(b):
    return bytes([W_CMD, b])


def rdata(n=1):
    return bytes([R_CMD, R_DATA]) * n


def cmd_data(c, d):
    return bytes([CMD_DATA, c, d])


def aux(*bs):
    return b"".join(bytes([AUX, b]) + rdata() for b in bs)


def key(code, down):
    return bytes([KEY | (0x10 if down else 0)]) + struct.pack("<H", code)


def pointer(x, y, buttons=0, wheel=0):
    return bytes([POINTER]) + struct.pack("<HHHHBbb", x, y, 1024, 768, buttons, wheel, 0)


def roundtrip(patches=()):
    if not patches:
        return bytes([ROUNDTRIP, 0])
    out = bytes([ROUNDTRIP, 0x80 | (len(patches) - 1)])
    for at, val in patches:
        out += struct.pack("<HB", at, val)
    return out


# Linux i8042 probe: flush, self test, command byte, port tests, enable.
probe = (bytes([R_CMD]) + wcmd(0xAA) + rdata() + wcmd(0x20) + rdata() + cmd_data(0x60, 0x47) +
         wcmd(0xA8) + wcmd(0xA9) + rdata() + wcmd(0xAB) + rdata() + wcmd(0xAE))
atkbd = wdata(0xF2) + rdata(3) + wdata(0xED) + rdata() + wdata(0x02) + rdata() + wdata(0xF0) + rdata() + \
    wdata(0x00) + rdata(2) + wdata(0xF4) + rdata()
# IntelliMouse and Explorer knocks, then stream mode.
psmouse = aux(0xFF) + rdata(2) + aux(0xF3, 200, 0xF3, 100, 0xF3, 80, 0xF2) + rdata() + \
    aux(0xF3, 200, 0xF3, 200, 0xF3, 80, 0xF2) + rdata() + aux(0xE8, 3, 0xE6, 0xF4)
typing = b"".join(key(c, d) + rdata(3) for c in (30, 48, 46, 28, 42, 97, 125) for d in (True, False))
moving = b"".join(pointer(100 + 37 * i, 100 + 11 * i, i & 7, (i % 3) - 1) + rdata(4) for i in range(12))

seeds = {
    "boot": probe + atkbd + psmouse,
    "typing": probe + atkbd + typing,
    "mouse": probe + psmouse + moving,
    "translate": probe + cmd_data(0x60, 0x07) + typing + cmd_data(0x60, 0x47) + typing,
    "paused": probe + psmouse + bytes([RUNNING]) + typing + moving + bytes([RUNNING | 0x10]) + rdata(40),
    "snapshot": probe + atkbd + psmouse + key(30, True) + pointer(300, 200, 1) + roundtrip() + rdata(8) +
    roundtrip([(10, 0xFF), (40, 0x03)]),
    "outport": probe + wcmd(0xD0) + rdata() + cmd_data(0xD1, 0xDF) + wcmd(0xDD) + wcmd(0xD0) + rdata() +
    cmd_data(0xD2, 0x55) + rdata() + cmd_data(0xD3, 0xAA) + rdata() + wcmd(0xFE),
    "ram": probe + b"".join(cmd_data(0x60 + i, i * 7) + wcmd(0x20 + i) + rdata() for i in range(32)),
    "wrap_remote": probe + psmouse + aux(0xEE, 0x12, 0xEC, 0xF0) + moving + aux(0xEB, 0xEA, 0xE9, 0xE7, 0xE6),
    "reset": probe + atkbd + psmouse + bytes([RESET]) + probe + typing,
    "restore": probe + bytes([RESTORE | 0x10]) + struct.pack("<H", 2) + b"\xa0\x00",
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(blob)
