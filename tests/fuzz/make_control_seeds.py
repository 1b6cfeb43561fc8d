#!/usr/bin/env python3
"""Writes seed inputs for fuzz_control into DIR: a first byte for the stand-in
actions (bit 0: they fail; bits 1-7: length of their failure message, which
follows), then request lines as hyvectl sends them (docs/hyvectl.md)."""
import os
import sys


def seed(fail, msg, lines):
    return bytes([(len(msg) << 1) | fail]) + msg + b"".join(l + b"\n" for l in lines)


seeds = {
    "all": seed(0, b"", [b'{"cmd":"status"}', b'{"cmd":"pause","id":1}', b'{"cmd":"resume","id":"a"}',
                         b'{"cmd":"snapshot","path":"/tmp/vm.snap","exit":false}',
                         b'{"cmd":"screenshot","path":"/tmp/shot.png"}', b'{"cmd":"poweroff"}',
                         b'{"cmd":"reset"}', b'{"cmd":"quit"}']),
    "failing": seed(1, b"no \xff snapshot", [b'{"cmd":"snapshot","path":"/x","exit":true,"id":7}',
                                             b'{"cmd":"pause"}', b'{"cmd":"quit"}']),
    "malformed": seed(0, b"", [b"{", b'{"cmd":5}', b'{"cmd":"status","extra":1}', b'[]', b'{"cmd":"snapshot"}',
                               b'{"cmd":"snapshot","path":"relative"}', b'{"id":{},"cmd":"status"}', b"\x00\xff"]),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(blob)
