#!/usr/bin/env python3
"""Writes seed inputs for fuzz_options into DIR: command lines as the
documentation and the tests use them, -k files, -o assignments and -s
option strings (the input layout is fuzz_options.c's)."""
import os
import struct
import sys

ARGV, ASSIGN, SLOT = 0, 2, 3


def seed(mode, strings, kfile=b""):
    return bytes([mode]) + struct.pack("<H", len(kfile)) + b"\0".join(s.encode() for s in strings) + kfile


conf = b"# a comment\n\n cpus = 2 \nmemory.size=1G # trailing\nlpc.com1.path=stdio\npci.0.3.0.device=virtio-rnd\n"
seeds = {
    "boot": seed(ARGV, ["-c", "2", "-m", "512M", "-s", "3,virtio-blk,/tmp/disk.img,ro", "-s", "4,virtio-net,tap0",
                        "-l", "com1,stdio", "--kernel", "/boot/vmlinuz", "--initrd", "/boot/initrd.img",
                        "--cmdline", "console=ttyS0", "vm1"]),
    "display": seed(ARGV, ["-s", "5,fbuf,tcp=127.0.0.1:5901,w=1280,h=800,password=secret,vga=on", "-s",
                           "6,xhci,tablet,kbd", "-c", "cpus=4", "-m", "0x400", "vm2"]),
    "config_file": seed(ARGV, ["-k", "vm.conf", "-o", "name=vm3", "--print-config"], conf),
    "restore": seed(ARGV, ["-r", "/tmp/vm.snap", "--eager", "-o", "control.socket=off", "-l", "com2,unix=/tmp/s"]),
    "slots": seed(ARGV, ["-s", "0:31:0,lpc", "-s", "1:2:3,virtio-rnd", "-s", "7:0,hostbridge", "-s", "31,fbuf,wait",
                         "-l", "com4,tcp=[::1]:7000", "-l", "com3,file=/tmp/out", "vm4"]),
    "errors": seed(ARGV, ["-c", "x", "-m", "5Q", "-s", "32,virtio-blk", "-l", "com9,stdio", "-h", "-x", "a", "b"]),
    "assign": seed(ASSIGN, ["cpus=010", "memory.size=2GiB", "a.b=1", "a.b.c=2", "log.level=debug", "x=", "=y",
                            "lpc.i8042=off", "snapshot.eager=yes"], b"k=v\nbad line\n"),
    "slot_options": seed(SLOT | 4, ["/tmp/disk.img,ro,serial=abc", "path=/x,,y", "tap0,mac=52:54:00:12:34:56"]),
    "bootrom": seed(ARGV, ["-l", "bootrom,/usr/share/OVMF/OVMF_CODE_4M.fd,/tmp/vm/VARS.fd", "-l", "bootrom,",
                           "-l", "bootrom,a,b,c", "-o", "lpc.bootvars=/x", "--kernel", "/boot/vmlinuz", "vm5"]),
    "xhci_options": seed(SLOT | 8, ["tablet,kbd", "tablet,mouse", ",", "kbd=1"]),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(blob)
