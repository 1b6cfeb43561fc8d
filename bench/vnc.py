#!/usr/bin/python3
"""bench/vnc: what a VNC client receives, hyve's fbuf + VNC server against QEMU's
`-vga std -vnc`, the same guest (the stock kernel's bochs DRM driver at 1024x768,
fbcon) in one run on the same KVM. One client, asking for ZRLE (both servers
speak it) through tests/integration/rfb_client.py, which counts bytes:

  (a) a full-screen text repaint (48 lines of 128 characters on the console),
  (b) a one-line change (one short line printed),
  (c) host CPU time of the VMM process over 10 s with a static screen and the
      client asking for updates all the while.

Bytes and time are measured from the command until the screen has been quiet
for 1 s (that second is not counted). Prints a table and ratios."""
import argparse
import os
import pathlib
import socket
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "bench"))
from rfb_client import ENC_DESKTOP_SIZE, ENC_ZRLE, RfbClient  # noqa: E402
from snapshot import Serial  # noqa: E402

CMDLINE = "console=ttyS0 quiet hyve.test=cmd video=1024x768"  # QEMU offers EDID with 1280x800
QUIET = 1.0
FULL = ("i=0; while [ $i -lt 48 ]; do printf '%0128d\\n' $i; i=$((i+1)); done > /dev/tty1; "
        "echo repainted")
LINE = "echo hyve > /dev/tty1; echo oneline"
SETUP = "echo 0 > /sys/class/graphics/fbcon/cursor_blink; printf '\\033[2J' > /dev/tty1; echo quiet"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(client, timeout=QUIET):
    """Reads updates (keeping one request outstanding) until none comes for `timeout` s;
    returns (bytes, seconds until the last update)."""
    start_bytes, start = client.bytes_received, time.monotonic()
    last = start
    client.sock.settimeout(timeout)
    while True:
        try:
            rects = client.read_update()
        except socket.timeout:
            return client.bytes_received - start_bytes, last - start
        if rects is not None:
            last = time.monotonic()
            client.request()


def connect(target):
    deadline = time.monotonic() + 120
    while True:
        try:
            return RfbClient(target, encodings=(ENC_ZRLE, ENC_DESKTOP_SIZE))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def measure(argv, target):
    s = Serial(argv)
    try:
        s.wait("HYVE-CMD-READY")
        s.ask(SETUP, "quiet")
        c = connect(target)
        c.update(incremental=False)
        c.request()
        drain(c, 3)
        if (c.width, c.height) != (1024, 768):
            raise RuntimeError(f"screen is {c.width}x{c.height}, not the bochs driver's 1024x768")
        r = {}
        s.ask(FULL, "repainted")
        r["full_bytes"], r["full_time"] = drain(c)
        s.ask(LINE, "oneline")
        r["line_bytes"], r["line_time"] = drain(c)
        before = cpu_seconds(s.proc.pid)
        drain(c, 10)
        r["idle_cpu"] = cpu_seconds(s.proc.pid) - before
        c.close()
        return r
    finally:
        s.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hyve", default=str(REPO / "build" / "hyve"))
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    a = ap.parse_args()
    rundir = os.environ.get("HYVE_RUNDIR", "/tmp")
    common = ["--kernel", a.kernel, "--initrd", a.initrd, "--cmdline", CMDLINE]
    h = measure([a.hyve, "-c", "1", "-m", "256M", "-l", "com1,stdio", *common, "-s", "5,fbuf,tcp=127.0.0.1:5990",
                 "-o", "control.socket=off", "bench-vnc"], ("127.0.0.1", 5990))
    qsock = os.path.join(rundir, "bench-vnc-qemu.sock")
    q = measure(["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1", "-M", "pc",
                 "-nodefaults", "-vga", "std", "-display", "none", "-vnc", f"unix:{qsock}", "-serial", "stdio",
                 "-no-reboot", "-kernel", a.kernel, "-initrd", a.initrd, "-append", CMDLINE], qsock)
    print("| measure | hyve | QEMU | hyve / QEMU |")
    print("| --- | --- | --- | --- |")
    for key, label, unit in (("full_bytes", "full-screen text repaint: bytes", 1),
                             ("full_time", "full-screen text repaint: s to last update", 1),
                             ("line_bytes", "one-line change: bytes", 1),
                             ("line_time", "one-line change: s to last update", 1),
                             ("idle_cpu", "static screen, 10 s: VMM CPU s", 1)):
        hv, qv = h[key] * unit, q[key] * unit
        ratio = f"{hv / qv:.2f}" if qv else "-"
        fmt = "{:.0f}" if "bytes" in key else "{:.3f}"
        print(f"| {label} | {fmt.format(hv)} | {fmt.format(qv)} | {ratio} |")


if __name__ == "__main__":
    main()
