#!/usr/bin/env python3
"""Writes seed inputs for fuzz_fw_cfg into DIR: OVMF's probe (signature, ID,
directory by port), file reads by DMA as its QemuFwCfgLib issues them, the
table loader read in pieces, skips, refused writes, descriptors and buffers
outside RAM, and snapshots in the middle of a read (the operation codes are
fuzz_fw_cfg.c's). The harness's files, in directory order: etc/acpi/tables
0x20, etc/acpi/rsdp 0x21, etc/table-loader 0x22, etc/e820 0x23,
opt/fuzz/small 0x24, opt/fuzz/empty 0x25."""
import os
import struct
import sys

SELECT, READ, REP, STORE, DMA_HI, DMA_LO, DMA, ANY, RESET, ROUNDTRIP, RESTORE = range(11)
C_ERROR, C_READ, C_SKIP, C_SELECT, C_WRITE = 0x01, 0x02, 0x04, 0x08, 0x10


def select(key):
    return bytes([SELECT]) + struct.pack("<H", key)


def read(n):
    return bytes([READ, n])


def rep(n):
    out = b""
    while n > 0:
        out += bytes([REP, min(n, 255)])
        n -= 255
    return out


def dma(control, length, addr, desc=0x100, wide=False):
    if wide:
        return bytes([DMA | 0x10]) + struct.pack("<HIIQ", desc, control, length, addr)
    return bytes([DMA]) + struct.pack("<HIIH", desc, control, length, addr)


def sel(key):
    return key << 16 | C_SELECT


def roundtrip():
    return bytes([ROUNDTRIP, 0])


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    probe = select(0) + read(4) + select(1) + read(4) + select(0x19) + rep(4 + 6 * 64)
    seeds = {
        "probe": probe,
        "dma-files": probe + dma(sel(0x24) | C_READ, 12, 0x1000) + dma(sel(0x23) | C_READ, 40, 0x2000)
        + dma(sel(0x21) | C_READ, 36, 0x3000),
        "loader-pieces": dma(sel(0x22) | C_READ, 128, 0x1000) + dma(C_READ, 128, 0x1080)
        + dma(C_SKIP, 256, 0) + dma(C_READ, 4096, 0x2000),
        "tables-by-port": select(0x20) + rep(2000) + roundtrip() + rep(600),
        "skip-select": dma(sel(0x20) | C_SKIP, 36, 0) + read(8) + dma(sel(0x25) | C_READ, 16, 0x400)
        + dma(C_SKIP | C_READ, 4, 0x500),
        "refused": dma(sel(0x24) | C_WRITE, 4, 0x1000) + dma(C_READ, 0xFFFFFFFF, 0x10)
        + dma(C_READ, 16, 0xFFFFFFFFFFFFFFF8, wide=True) + dma(C_READ, 32, 0xFFF0)
        + dma(C_READ, 16, 0x1000, desc=0xFFF8),
        "dma-halves": bytes([DMA_HI]) + struct.pack("<I", 0x01000000) + bytes([DMA_LO]) + struct.pack("<I", 0)
        + bytes([DMA_LO]) + struct.pack("<I", 0x00010000),
        "ports": b"".join(bytes([ANY | (s << 4) | w, p]) + struct.pack("<I", 0x19)
                          for s in range(3) for w in (0, 0x40) for p in range(16)),
        "snapshot-mid-read": select(0x22) + read(100) + bytes([DMA_HI]) + struct.pack("<I", 5) + roundtrip()
        + read(100) + bytes([RESET]) + read(4),
        "store-descriptor": bytes([STORE]) + struct.pack("<HH", 0x200, 16)
        + struct.pack(">IIQ", sel(0x24) | C_READ, 12, 0x300) + bytes([DMA_LO]) + struct.pack("<I", 0x00020000),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
