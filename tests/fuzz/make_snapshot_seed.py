#!/usr/bin/python3
"""Writes a small valid snapshot (manifest, a CBOR section, one RAM page, end) as a fuzz seed."""
import struct
import sys

import cbor2
import xxhash

sys.path.insert(0, __file__.rsplit("/", 3)[0] + "/tests/integration")
from snapshot_file import checksum  # noqa: E402


def record(offset, name, payload, flags=0, version=1):
    align = 4096 if flags & 2 else 8
    poff = (offset + 40 + len(name) + align - 1) // align * align - offset
    head = struct.pack("<4sHHIIQQ", b"HREC", flags, len(name), version, poff, len(payload),
                       checksum(payload, flags & 2))
    head += struct.pack("<Q", xxhash.xxh3_64_intdigest(head + name.encode()))
    body = head + name.encode()
    body += bytes(poff - len(body)) + payload
    return body + bytes(-len(body) % 8)


def main(out):
    page = bytes(range(256)) * 16
    sections = [("manifest", cbor2.dumps({"vcpus": 1, "config": {"name": "seed"},
                                          "memory": {"size": 4096, "regions": {"ram.0": {"gpa": 0, "size": 4096}}},
                                          "cpu": {"vendor": "AuthenticAMD", "cpuid": {}}, "devices": {}}), 0),
                ("dev.lpc.com1", cbor2.dumps({"ier": 1, "rx_fifo": b"ab", "nested": {"x": -5, "t": True}}), 0),
                ("ram.0", page, 2), ("end", cbor2.dumps({}), 0)]
    body = b""
    for name, payload, flags in sections:
        body += record(64 + len(body), name, payload, flags)
    size = 64 + len(body)
    head = struct.pack("<8sHHBBHIIQ24s", b"HYVESNAP", 1, 0, 1, 0, 64, 4096, 0, size, bytes(24))
    head += struct.pack("<Q", xxhash.xxh3_64_intdigest(head))
    open(out, "wb").write(head + body)


if __name__ == "__main__":
    main(sys.argv[1])
