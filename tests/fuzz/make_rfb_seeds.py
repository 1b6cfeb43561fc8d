#!/usr/bin/env python3
"""Writes seed inputs for fuzz_rfb into DIR: client message streams after the
handshake as TigerVNC, noVNC and vncsnapshot send them (RFC 6143, big
endian): pixel formats, encoding lists, update requests, keys, pointer,
clipboard text and QEMU extended key events."""
import os
import struct
import sys


def pixel_format(bpp, depth, big, true_colour, rmax, gmax, bmax, rs, gs, bs):
    return bytes([0, 0, 0, 0]) + struct.pack(">BBBBHHHBBB3x", bpp, depth, big, true_colour, rmax, gmax, bmax, rs, gs, bs)


def encodings(*encs):
    return struct.pack(">BxH", 2, len(encs)) + b"".join(struct.pack(">i", e) for e in encs)


def update(x, y, w, h, incremental=0):
    return struct.pack(">BBHHHH", 3, incremental, x, y, w, h)


def key(down, keysym):
    return struct.pack(">BBxxI", 4, down, keysym)


def pointer(buttons, x, y):
    return struct.pack(">BBHH", 5, buttons, x, y)


def cut(text):
    return struct.pack(">BxxxI", 6, len(text)) + text


def qemu_key(down, keysym, keycode):
    return struct.pack(">BBHII", 255, 0, down, keysym, keycode)


RAW, TIGHT, ZRLE, DESKTOP, EXTKEY, LED = 0, 7, 16, -223, -258, -261
seeds = {
    "tigervnc": pixel_format(32, 24, 0, 1, 255, 255, 255, 16, 8, 0) + encodings(ZRLE, TIGHT, RAW, DESKTOP, EXTKEY, LED) +
    update(0, 0, 70, 67) + update(0, 0, 70, 67, 1) + pointer(1, 10, 10) + pointer(0, 12, 11),
    "novnc": encodings(TIGHT, RAW, -239, DESKTOP, EXTKEY) + update(0, 0, 1024, 768) + qemu_key(1, 0x61, 0x1E) +
    qemu_key(0, 0x61, 0x1E),
    "bgr233": pixel_format(8, 8, 0, 1, 7, 7, 3, 0, 3, 6) + encodings(RAW, ZRLE) + update(5, 5, 20, 20),
    "rgb565_be": pixel_format(16, 16, 1, 1, 31, 63, 31, 11, 5, 0) + encodings(ZRLE) + update(0, 0, 64, 64) +
    update(60, 60, 100, 100),
    "keys_cut": key(1, 0xFFE1) + key(1, 0x41) + key(0, 0x41) + key(0, 0xFFE1) + cut(b"clipboard") + pointer(0x18, 5, 5),
    "vncsnapshot": encodings(RAW) + update(0, 0, 65535, 65535),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(blob)
