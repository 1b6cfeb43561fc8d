#!/usr/bin/env python3
"""Writes seed inputs for fuzz_virtq into DIR: well-formed small guests
(direct, indirect, mixed chains) that the fuzzer then mutates."""
import os
import struct
import sys

DESC, AVAIL, USED, TABLE, DATA = 0x0000, 0x1000, 0x2000, 0x3000, 0x3800


def guest(qsize_log2, flags, chains, indirect_tables=(), ops=0x40, ops2=0, pops=64):
    ram = bytearray(0x4000)
    header = bytes([qsize_log2, flags]) + struct.pack("<HHH", DESC, AVAIL, USED) + bytes([0, pops - 1, ops, ops2])
    heads = []
    for head, descs in chains:
        heads.append(head)
        for idx, addr, length, dflags, nxt in descs:
            struct.pack_into("<QIHH", ram, DESC + 16 * idx, addr, length, dflags, nxt)
    for base, descs in indirect_tables:
        for idx, addr, length, dflags, nxt in descs:
            struct.pack_into("<QIHH", ram, base + 16 * idx, addr, length, dflags, nxt)
    for i, h in enumerate(heads):
        struct.pack_into("<H", ram, AVAIL + 4 + 2 * i, h)
    struct.pack_into("<H", ram, AVAIL + 2, len(heads))
    return header + bytes(ram) + struct.pack("<H", len(heads) + 1)


NEXT, WRITE, INDIRECT = 1, 2, 4
seeds = {
    "direct": guest(4, 0, [(0, [(0, DATA, 16, NEXT, 1), (1, DATA + 16, 64, WRITE, 0)]),
                           (2, [(2, DATA + 128, 512, WRITE, 0)])]),
    "event_idx": guest(3, 1, [(1, [(1, DATA, 8, 0, 0)]), (3, [(3, DATA + 8, 8, WRITE, 0)])], ops=0xC1),
    "indirect": guest(4, 3, [(5, [(5, TABLE, 48, INDIRECT, 0)])],
                      [(TABLE, [(0, DATA, 16, NEXT, 1), (1, DATA + 64, 256, WRITE | NEXT, 2),
                                (2, 0x100000, 4096, WRITE, 0)])]),
    "mixed": guest(5, 2, [(7, [(7, DATA, 10, NEXT, 9), (9, TABLE, 32, INDIRECT, 0)]),
                          (4, [(4, 0x100010, 100, 0, 0)])],
                   [(TABLE, [(0, DATA + 32, 1, NEXT, 1), (1, DATA + 48, 1, WRITE, 0)])], ops2=0x55),
    "loop": guest(2, 0, [(0, [(0, DATA, 4, NEXT, 1), (1, DATA, 4, NEXT, 0)])]),
    "unpop": guest(4, 0, [(i, [(i, DATA + 16 * i, 16, WRITE, 0)]) for i in range(8)], ops=0x2A),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(blob)
