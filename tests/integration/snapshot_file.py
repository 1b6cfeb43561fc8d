"""An independent reader of hyve snapshot files, written from
docs/snapshot-format.md alone (struct + cbor2 + xxhash), for the tests."""
import struct

import cbor2
import xxhash

HEADER = struct.Struct("<8sHHBBHIIQ24sQ")
RECORD = struct.Struct("<4sHHIIQQQ")
OPTIONAL, RAW = 1, 2


def checksum(payload, raw):
    """XXH3-64 of a payload; of its non-zero pages, each after its index, for RAW (RAM) records."""
    if not raw:
        return xxhash.xxh3_64_intdigest(payload)
    h = xxhash.xxh3_64()
    zero = bytes(4096)
    for i in range(0, len(payload), 4096):
        page = payload[i:i + 4096]
        if page != zero:
            h.update(struct.pack("<Q", i // 4096) + page)
    return h.intdigest()


def read(path):
    """Returns (header dict, list of record dicts); payloads of non-RAW records decoded."""
    data = open(path, "rb").read()
    (magic, major, minor, order, _, hsize, page, flags, size, _, hsum) = HEADER.unpack_from(data, 0)
    assert magic == b"HYVESNAP"
    assert hsum == xxhash.xxh3_64_intdigest(data[:56])
    header = dict(major=major, minor=minor, byte_order=order, header_size=hsize, page_size=page,
                  flags=flags, file_size=size)
    assert size == len(data)
    records, off = [], hsize
    while True:
        (rmagic, rflags, nlen, version, poff, length, psum, hsum) = RECORD.unpack_from(data, off)
        assert rmagic == b"HREC"
        name = data[off + 40:off + 40 + nlen].decode()
        assert hsum == xxhash.xxh3_64_intdigest(data[off:off + 32] + name.encode()), name
        start = off + poff
        payload = data[start:start + length]
        assert len(payload) == length, name
        assert psum == checksum(payload, rflags & RAW), name
        rec = dict(name=name, flags=rflags, version=version, offset=off, payload_offset=start, length=length)
        if rflags & RAW:
            assert start % page == 0, name
        else:
            assert start % 8 == 0, name
            rec["payload"] = cbor2.loads(payload)
        records.append(rec)
        if name == "end":
            break
        off = (start + length + 7) & ~7
    return header, records


def _align(n, a):
    return (n + a - 1) // a * a


def write(path, records, source, minor=None):
    """Writes a snapshot file laid out as the spec says, from records as read() returns them:
    each CBOR record's payload is (re-)encoded from rec["payload"], each RAW record's payload is
    copied from the file `source` (zero pages stay holes). The header's minor version is the
    source's unless given. Lets tests craft files whose records say what a real writer would not."""
    src = open(source, "rb")
    head = HEADER.unpack_from(src.read(64), 0)
    with open(path, "wb") as out:
        off = 64
        for rec in records:
            name = rec["name"].encode()
            raw = rec["flags"] & RAW
            start = _align(off + 40 + len(name), 4096 if raw else 8)
            if raw:
                length, h, zero = rec["length"], xxhash.xxh3_64(), bytes(4096)
                for i in range(0, length, 4096):
                    src.seek(rec["payload_offset"] + i)
                    page = src.read(4096)
                    if page != zero:
                        h.update(struct.pack("<Q", i // 4096) + page)
                        out.seek(start + i)
                        out.write(page)
                psum = h.intdigest()
            else:
                payload = cbor2.dumps(rec["payload"])
                length, psum = len(payload), xxhash.xxh3_64_intdigest(payload)
                out.seek(start)
                out.write(payload)
            fixed = RECORD.pack(b"HREC", rec["flags"], len(name), rec["version"], start - off, length, psum, 0)[:32]
            out.seek(off)
            out.write(fixed + struct.pack("<Q", xxhash.xxh3_64_intdigest(fixed + name)) + name)
            off = _align(start + length, 8)
        out.truncate(off)
        fields = list(head)
        if minor is not None:
            fields[2] = minor
        fields[8] = off
        fixed = HEADER.pack(*fields[:-1], 0)[:56]
        out.seek(0)
        out.write(fixed + struct.pack("<Q", xxhash.xxh3_64_intdigest(fixed)))
    src.close()
