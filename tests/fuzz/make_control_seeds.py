#!/usr/bin/env python3
"""Writes seed inputs for fuzz_control into DIR: a first byte for the stand-in
actions (bit 0: they fail; bits 1-7: n, the failure message's length n % 65,
and with n >= 65 a descriptor comes with every line), the failure message,
then request lines as hyvectl sends them (docs/hyvectl.md)."""
import os
import sys


def seed(fail, msg, lines, fd=False):
    n = len(msg) + (65 if fd else 0)
    return bytes([(n << 1) | fail]) + msg + b"".join(l + b"\n" for l in lines)


seeds = {
    "all": seed(0, b"", [b'{"cmd":"status"}', b'{"cmd":"pause","id":1}', b'{"cmd":"resume","id":"a"}',
                         b'{"cmd":"snapshot","path":"/tmp/vm.snap","exit":false}',
                         b'{"cmd":"screenshot","path":"/tmp/shot.png"}', b'{"cmd":"poweroff"}',
                         b'{"cmd":"reset"}', b'{"cmd":"quit"}']),
    "failing": seed(1, b"no \xff snapshot", [b'{"cmd":"snapshot","path":"/x","exit":true,"id":7}',
                                             b'{"cmd":"pause"}', b'{"cmd":"quit"}']),
    "malformed": seed(0, b"", [b"{", b'{"cmd":5}', b'{"cmd":"status","extra":1}', b'[]', b'{"cmd":"snapshot"}',
                               b'{"cmd":"snapshot","path":"relative"}', b'{"id":{},"cmd":"status"}', b"\x00\xff"]),
    "media": seed(0, b"", [b'{"cmd":"cd-insert","drive":"3:0","path":"/isos/a.iso","force":false}',
                           b'{"cmd":"cd-eject","drive":"0","force":true,"id":2}',
                           b'{"cmd":"cd-insert","drive":"3.1:0","path":"rel.iso"}', b'{"cmd":"cd-eject"}'], fd=True),
    "media-nofd": seed(1, b"medium locked", [b'{"cmd":"cd-insert","drive":"3:0","path":"/a.iso"}',
                                              b'{"cmd":"cd-eject","drive":"3:0","force":1}']),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(blob)
