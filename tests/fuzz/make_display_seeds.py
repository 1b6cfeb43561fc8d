#!/usr/bin/env python3
"""Writes seed inputs for fuzz_display into DIR: text mode with a cursor and
palette changes, DISPI modes set through ports and BAR2, framebuffer stores
and scan-outs, BAR moves, snapshot round trips, a snapshot section of its
own and console fonts (the operation codes are fuzz_display.c's)."""
import os
import struct
import sys


def cbor(v):
    """The few CBOR items a device section uses (RFC 8949)."""
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for size, code in ((1, 24), (2, 25), (4, 26), (8, 27)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | code]) + n.to_bytes(size, "big")
        raise ValueError(n)
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        return head(3, len(v.encode())) + v.encode()
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


def dispi(idx, v):
    return bytes([0x03 | idx << 4]) + struct.pack("<H", v)


def mode(x, y, bppsel, flags, virt=0, xoff=0, yoff=0):
    return bytes([0x08]) + struct.pack("<HHBBHHH", x, y, bppsel, flags, virt, xoff, yoff)


def vga_out(port, value, size=1):
    op = {1: 0x06, 2: 0x16, 4: 0x26}[size]
    return bytes([op, port - 0x3B0]) + struct.pack("<I", value)


def vga_in(port):
    return bytes([0x07, port - 0x3B0])


def crtc(idx, v):
    return vga_out(0x3D4, v << 8 | idx, 2)


def attr(idx, v):
    return vga_in(0x3DA) + vga_out(0x3C0, idx) + vga_out(0x3C0, v) + vga_out(0x3C0, 0x20)


def bar2(region, off, v, size=2, write=True):
    return bytes([(0x04 if write else 0x05) | region << 4, off, {1: 0, 2: 1, 4: 2, 8: 3}[size]]) + struct.pack("<Q", v)


def fb(off64, data, dirty=True):
    return bytes([0x19 | (0x20 if dirty else 0)]) + struct.pack("<HH", off64, len(data)) + data


def text(off, data):
    return bytes([0x0A]) + struct.pack("<HH", off, len(data)) + data


def scan(capture=True):
    return bytes([0x1B if capture else 0x0B])


def roundtrip(patches=()):
    if not patches:
        return bytes([0x0C, 0])
    return bytes([0x0C, 0x80 | (len(patches) - 1)]) + b"".join(struct.pack("<HB", a, v) for a, v in patches)


def restore(section, version=2):
    return bytes([0x0D | version << 4]) + struct.pack("<H", len(section)) + section


def cfg(reg, v, size=4):
    return bytes([0x0E | {1: 0, 2: 1, 4: 2}[size] << 4, reg]) + struct.pack("<I", v)


def font(blob):
    return bytes([0x2F]) + struct.pack("<H", len(blob)) + blob


hello = b"".join(bytes([c, 0x1F]) for c in b"Hello, hyve")
psf2 = struct.pack("<8I", 0x864AB572, 0, 32, 1, 2, 16, 16, 8) + bytes(range(32)) + b"A\xff\xe2\x96\x88\xff"
psf1 = bytes([0x36, 0x04, 0x02, 8]) + bytes(256 * 8) + b"".join(struct.pack("<HH", 0x41 + i % 26, 0xFFFF) for i in range(256))
seeds = {
    "text": text(0, hello) + crtc(0x0E, 0) + crtc(0x0F, 5) + crtc(0x0A, 0x0D) + crtc(0x0B, 0x0F) + scan() +
    attr(0x01, 0x3F) + vga_out(0x3C8, 7) + vga_out(0x3C9, 0x3F) + vga_out(0x3C9, 0) + vga_out(0x3C9, 0x20) +
    crtc(0x0C, 0x07) + crtc(0x0D, 0xD0) + crtc(0x13, 0x50) + scan(),
    "vga_regs": b"".join(vga_out(p, i) + vga_in(p) for i, p in enumerate(range(0x3C0, 0x3E0))) +
    crtc(0x11, 0x80) + crtc(0x07, 0xFF) + crtc(0x00, 0x12) + attr(0x10, 0x09) + scan(),
    "mode800": mode(800, 600, 5, 0x41) + fb(0, b"\xff\x00\x00\x00" * 64) + scan() + dispi(6, 1024) + dispi(9, 10) +
    fb(800, b"\x00\xff\x00\x00" * 32) + scan(),
    "mode16": mode(640, 480, 3, 0xC1) + fb(4, bytes(range(256))) + scan() + dispi(4, 0) + scan(),
    "getcaps": dispi(4, 0x02) + bytes([0x02 | 0x10]) + dispi(4, 0) + dispi(0, 0xB0C4) + dispi(5, 3) + dispi(10, 1),
    "mmio": bar2(0, 2, 1024) + bar2(0, 4, 768) + bar2(0, 6, 32) + bar2(0, 8, 0xC1) + bar2(0, 0, 0, write=False) +
    bar2(1, 0x14, 0x0E0F, 2) + bar2(1, 0x15, 0, 1, write=False) + bar2(2, 0, 0xFFFFFFFF, 4) + scan(),
    "offsets": mode(640, 480, 5, 0xC1, 4000, 100, 3000) + fb(0xFFFF, b"\x11" * 64) + scan() + dispi(8, 65535) +
    dispi(9, 65535) + scan(),
    "pci": cfg(0x10, 0xD0000000) + cfg(0x04, 0x0000, 2) + fb(16, b"\x42" * 16) + cfg(0x04, 0x0002, 2) +
    cfg(0x18, 0xFFFFFFFF) + cfg(0x18, 0xB0000000) + bar2(0, 0, 0, write=False) + scan(),
    "snapshot": mode(800, 600, 5, 0xC1) + fb(10, b"\x33" * 100) + text(160, hello) + attr(2, 0x15) +
    roundtrip([(40, 0x07), (120, 0xFF)]) + scan(),
    "restore": restore(cbor({"index": 4, "dispi": {"id": 0xB0C5, "xres": 640, "yres": 480, "bpp": 32,
                                                   "enable": 0x41, "virt_width": 640, "virt_height": 1000,
                                                   "x_offset": 0, "y_offset": 0},
                             "width": 1024, "height": 768, "framebuffer": b"\x7f" * 64,
                             "vga": {"misc": 0x67, "crtc": bytes(25), "dac_step": 1}})) + scan(),
    "fonts": font(psf2) + font(psf1) + font(b"\x1f\x8b\x08\x00" + bytes(16)),
    "reset": mode(1024, 768, 5, 0x41) + bytes([0x0F]) + scan() + bytes([0x1F, 0x10]),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(blob)
