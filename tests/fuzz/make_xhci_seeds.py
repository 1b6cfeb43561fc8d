#!/usr/bin/env python3
"""Writes seed inputs for fuzz_xhci into DIR: small guests that start the controller,
reset a port, enable a slot, address the device, configure its interrupt endpoint, run
control transfers and complete interrupt transfers from pointer and key events."""
import os
import struct
import sys

DCBAA, CMD, ERST, EVR, ICTX, OCTX, EP0, INTR, DATA, ICTX2 = (
    0x0000, 0x0100, 0x0200, 0x0400, 0x0800, 0x1000, 0x1400, 0x1500, 0x1600, 0x2000)
CAP, RT, DB = 0x40, 0x1000, 0x2000


def trb(ram, at, param, status, ttype, flags=0, cycle=1):
    struct.pack_into("<QII", ram, at, param, status, ttype << 10 | flags | cycle)


def op_w32(off, v):
    return bytes([0]) + struct.pack("<HI", off, v)


def op_db(db, target):
    return bytes([3, db, target])


def op_start():
    return bytes([4]) + struct.pack("<HHHHB", DCBAA, CMD, ERST, EVR, 0)


def op_ptr(x, y, buttons, wv=0, wh=0):
    return bytes([5]) + struct.pack("<HHBbb", x, y, buttons, wv, wh)


def op_key(code, down):
    return bytes([6]) + struct.pack("<HB", code, down)


def guest(port=1, extra_ops=b"", loop=False):
    ram = bytearray(0x4000)
    struct.pack_into("<QII", ram, ERST, EVR, 32, 0)
    struct.pack_into("<Q", ram, DCBAA + 8, OCTX)
    # Address Device input context: slot + ep0.
    struct.pack_into("<II", ram, ICTX, 0, 3)
    struct.pack_into("<II", ram, ICTX + 32, 1 << 27 | 3 << 20, port << 16)
    struct.pack_into("<IIII", ram, ICTX + 64, 0, 64 << 16 | 4 << 3 | 3 << 1, EP0 | 1, 0)
    # Configure Endpoint input context: interrupt IN at DCI 3.
    struct.pack_into("<II", ram, ICTX2, 0, 1 | 1 << 3)
    struct.pack_into("<I", ram, ICTX2 + 32, 3 << 27)
    struct.pack_into("<IIII", ram, ICTX2 + 32 * 4, 4 << 16, 8 << 16 | 7 << 3 | 3 << 1, INTR | 1, 0)
    trb(ram, CMD, 0, 0, 9)
    trb(ram, CMD + 16, ICTX, 0, 11, 1 << 24)
    trb(ram, CMD + 32, ICTX2, 0, 12, 1 << 24)
    trb(ram, CMD + 48, 0, 0, 23)
    trb(ram, CMD + 64, CMD, 0, 6, 2)  # link back, toggle cycle
    get_desc = 0x80 | 6 << 8 | 0x0100 << 16 | 18 << 48
    set_conf = 0x00 | 9 << 8 | 1 << 16
    set_report = 0x21 | 9 << 8 | 0x0200 << 16 | 1 << 48
    trb(ram, EP0, get_desc, 8, 2, 1 << 6 | 3 << 16)
    trb(ram, EP0 + 16, DATA, 18, 3, 1 << 16 | 1 << 2)
    trb(ram, EP0 + 32, 0, 0, 4, 1 << 5)
    trb(ram, EP0 + 48, set_conf, 8, 2, 1 << 6)
    trb(ram, EP0 + 64, 0, 0, 4, 1 << 5 | 1 << 16)
    trb(ram, EP0 + 80, set_report, 8, 2, 1 << 6 | 2 << 16)
    trb(ram, EP0 + 96, 0x02, 1, 3, 1 << 6)  # immediate data: Caps Lock
    trb(ram, EP0 + 112, 0, 0, 4, 1 << 5 | 1 << 16)
    trb(ram, EP0 + 128, EP0 + 0x400 if loop else EP0, 0, 6, 2)
    if loop:
        trb(ram, EP0 + 0x400, EP0 + 0x400, 0, 6)
    trb(ram, INTR, DATA + 0x100, 8, 1, 1 << 5 | 1 << 2)
    trb(ram, INTR + 16, DATA + 0x110, 4, 1, 1 << 4 | 1 << 2)
    trb(ram, INTR + 32, 0x1234, 0, 7, 1 << 5)  # event data
    trb(ram, INTR + 48, INTR, 0, 6, 2)
    ops = (op_start() + op_w32(CAP + 0x400 + 0x10 * (port - 1), 1 << 9 | 1 << 4) + op_db(0, 0) +
           op_db(1, 1) + op_db(1, 3) + op_ptr(100, 200, 1, 1, -1) + op_key(30, 1) + op_key(30, 0) +
           op_ptr(300, 400, 0) + op_w32(RT + 0x38, EVR + 0x100 | 8) + extra_ops)
    return struct.pack("<H", len(ops)) + ops + bytes(ram)


seeds = {
    "tablet": guest(1),
    "kbd": guest(2),
    "snapshot": guest(1, bytes([7]) + op_ptr(5, 5, 2) + bytes([7, 8])),
    "loop": guest(1, loop=True),
    "stop": guest(2, op_w32(CAP + 0x18, 2) + op_db(0, 0) + bytes([8]) + op_start()),
}

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
