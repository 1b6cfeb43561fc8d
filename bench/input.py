#!/usr/bin/python3
"""bench/input: latency of a key from a VNC client to the guest's input layer, hyve
(fbuf VNC + xhci,tablet,kbd) against QEMU (-device qemu-xhci -device usb-kbd -device
usb-tablet -vnc), the same guest in one run on the same KVM.

The client (tests/integration/rfb_client.py) sends QEMU extended key events for 'a',
press and release alternately, one at a time; the guest's evdump (tests/tools/evdump.c)
prints each evdev event on the serial port. The latency of one event is from just
before the client sends it to the moment its line arrives on the host. The serial
path is the same for both VMMs (16550 at the same speed, read the same way), so the
difference between them is the VNC-to-guest-driver path. Prints median and p99."""
import argparse
import os
import pathlib
import re
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))
from rfb_client import ENC_DESKTOP_SIZE, ENC_QEMU_EXT_KEY, ENC_RAW, RfbClient  # noqa: E402
from snapshot import Serial  # noqa: E402

CMDLINE = "console=ttyS0 quiet hyve.test=input"
KEY_A, QNUM_A, KEYSYM_A = 30, 0x1e, 0x61


def connect(target):
    deadline = time.monotonic() + 120
    while True:
        try:
            return RfbClient(target, encodings=(ENC_RAW, ENC_DESKTOP_SIZE, ENC_QEMU_EXT_KEY))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_line(s, regex, start, timeout=30):
    """Waits for regex in serial output after offset start; returns (match end, arrival time)."""
    deadline = time.monotonic() + timeout
    pattern = re.compile(regex.encode())
    with s.cond:
        while True:
            m = pattern.search(s.buf, start)
            if m:
                return m.end(), time.monotonic()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {regex!r} on serial: {s.buf[-800:].decode(errors='replace')}")
            s.cond.wait(0.05)


def measure(argv, target, keys):
    s = Serial(argv)
    try:
        s.wait("HYVE-CMD-READY")
        s.wait(r"DEV \S+ .*[Kk]eyboard", timeout=120)
        c = connect(target)
        c.update(incremental=False)  # the server acknowledges extended key events in an update
        deadline = time.monotonic() + 30
        while not c.ext_key_acked and time.monotonic() < deadline:
            c.update(incremental=False)
        if not c.ext_key_acked:
            raise RuntimeError("the VNC server did not acknowledge QEMU extended key events")
        # Warm up: the first key also finds which input device carries it.
        pos = len(s.buf)
        c.ext_key(QNUM_A, KEYSYM_A, True)
        pos, _ = wait_line(s, rf"EV (\S+) 1 {KEY_A} 1\r?\n", pos)
        dev = re.findall(rb"EV (\S+) 1 %d 1" % KEY_A, s.buf)[-1].decode()
        c.ext_key(QNUM_A, KEYSYM_A, False)
        pos, _ = wait_line(s, rf"EV {re.escape(dev)} 1 {KEY_A} 0\r?\n", pos)
        lat = []
        for i in range(keys):
            down = i % 2 == 0
            t0 = time.monotonic()
            c.ext_key(QNUM_A, KEYSYM_A, down)
            pos, t1 = wait_line(s, rf"EV {re.escape(dev)} 1 {KEY_A} {int(down)}\r?\n", pos)
            lat.append(t1 - t0)
        c.close()
        return dev, lat
    finally:
        s.kill()


def summary(lat):
    lat = sorted(lat)
    return statistics.median(lat) * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hyve", default=str(REPO / "build" / "hyve"))
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--keys", type=int, default=1000)
    a = ap.parse_args()
    rundir = os.environ.get("HYVE_RUNDIR", "/tmp")
    hsock, qsock = os.path.join(rundir, "bench-input-hyve.vnc"), os.path.join(rundir, "bench-input-qemu.vnc")
    for p in (hsock, qsock):
        if os.path.exists(p):
            os.unlink(p)
    common = ["--kernel", a.kernel, "--initrd", a.initrd, "--cmdline", CMDLINE]
    h = measure([a.hyve, "-c", "1", "-m", "256M", "-l", "com1,stdio", *common, "-s", f"5,fbuf,unix={hsock}",
                 "-s", "6,xhci,tablet,kbd", "-o", "control.socket=off", "bench-input"], hsock, a.keys)
    q = measure(["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1", "-M", "pc",
                 "-nodefaults", "-vga", "std", "-display", "none", "-vnc", f"unix:{qsock}", "-serial", "stdio",
                 "-device", "qemu-xhci", "-device", "usb-kbd", "-device", "usb-tablet",
                 "-no-reboot", *["-kernel", a.kernel, "-initrd", a.initrd, "-append", CMDLINE]], qsock, a.keys)
    hm, hp = summary(h[1])
    qm, qp = summary(q[1])
    print(f"{a.keys} key events; hyve's went to {h[0]}, QEMU's to {q[0]}")
    print("| measure | hyve | QEMU | hyve / QEMU |")
    print("| --- | --- | --- | --- |")
    print(f"| median latency (ms) | {hm:.2f} | {qm:.2f} | {hm / qm:.2f} |")
    print(f"| p99 latency (ms) | {hp:.2f} | {qp:.2f} | {hp / qp:.2f} |")


if __name__ == "__main__":
    main()
