#!/usr/bin/python3
"""bench/snapshot: a 1 GiB guest that has touched 256 MiB. Save time and file
size, and restore-to-running time (until the guest answers on serial), hyve
against QEMU (migrate "exec:cat > FILE" / -incoming), in one run on the same
KVM. Prints a table and ratios."""
import argparse
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
CMDLINE = "console=ttyS0 quiet hyve.test=cmd"
FILL = "yes 0123456789abcdef | head -c 268435456 > /fill; sync; echo filled"


class Serial:
    """Reads a process's stdout in a thread; writes its stdin."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     bufsize=0)
        self.buf = b""
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        while chunk := self.proc.stdout.read(4096):
            with self.cond:
                self.buf += chunk
                self.cond.notify_all()

    def wait(self, pattern, timeout=300, start=0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not re.search(pattern.encode(), self.buf[start:]):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"no {pattern!r}: {self.buf[-1500:].decode(errors='replace')}")
                self.cond.wait(0.2)

    def ask(self, command, answer, timeout=300):
        start = len(self.buf)
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        self.wait(answer, timeout, start)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def boot_and_fill(argv):
    s = Serial(argv)
    s.wait("HYVE-CMD-READY")
    s.ask(FILL, "filled")
    return s


def restore_time(argv, resume=None):
    start = time.monotonic()
    s = Serial(argv)
    if resume:
        resume()
    s.ask("echo back-$((1+1))", "back-2", timeout=120)
    elapsed = time.monotonic() - start
    s.kill()
    return elapsed


def disk_usage(path):
    st = os.stat(path)
    return st.st_blocks * 512


def bench_hyve(a, work):
    sock, snap = work / "hyve.sock", work / "hyve.snap"
    base = [a.hyve, "-c", "1", "-m", "1G", "-l", "com1,stdio"]
    s = boot_and_fill(base + ["--kernel", a.kernel, "--initrd", a.initrd, "--cmdline", CMDLINE,
                              "-o", f"control.socket={sock}", "bench-snap"])
    start = time.monotonic()
    r = subprocess.run([a.hyvectl, f"--socket={sock}", f"--suspend={snap}"], capture_output=True, text=True)
    save = time.monotonic() - start
    if r.returncode:
        raise RuntimeError(r.stderr)
    s.proc.wait(60)
    restore = restore_time(base + ["-r", snap, "-o", f"control.socket={work / 'hyve2.sock'}", "bench-snap2"])
    return dict(save=save, size=disk_usage(snap), restore=restore)


def qmp(path, *commands):
    c = socket.socket(socket.AF_UNIX)
    c.connect(str(path))
    f = c.makefile("rw")
    f.readline()
    replies = []
    for cmd in ({"execute": "qmp_capabilities"},) + commands:
        f.write(json.dumps(cmd) + "\n")
        f.flush()
        while True:
            line = json.loads(f.readline())
            if "return" in line or "error" in line:
                replies.append(line)
                break
    c.close()
    return replies[1:]


def bench_qemu(a, work):
    mon, snap = work / "qmp.sock", work / "qemu.snap"
    base = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "1024", "-smp", "1", "-M", "pc",
            "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
            "-kernel", a.kernel, "-initrd", a.initrd, "-append", CMDLINE]
    s = boot_and_fill(base + ["-qmp", f"unix:{mon},server=on,wait=off"])
    start = time.monotonic()
    qmp(mon, {"execute": "stop"}, {"execute": "migrate", "arguments": {"uri": f"exec:cat > {snap}"}})
    while qmp(mon, {"execute": "query-migrate"})[0]["return"].get("status") not in ("completed", "failed"):
        time.sleep(0.05)
    save = time.monotonic() - start
    s.kill()
    mon2 = work / "qmp2.sock"

    def cont():
        # The source was stopped for the save, so QEMU keeps the restored VM paused until "cont".
        while True:
            try:
                status = qmp(mon2, {"execute": "query-status"})[0]["return"]["status"]
            except (OSError, ValueError):
                status = "starting"
            if status not in ("starting", "inmigrate"):
                qmp(mon2, {"execute": "cont"})
                return
            time.sleep(0.02)

    restore = restore_time(base + ["-incoming", f"exec:cat {snap}", "-qmp", f"unix:{mon2},server=on,wait=off"], cont)
    return dict(save=save, size=disk_usage(snap), restore=restore)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hyve", default=str(REPO / "build" / "hyve"))
    ap.add_argument("--hyvectl", default=str(REPO / "build" / "hyvectl"))
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    a = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(dir=os.environ.get("HYVE_RUNDIR", "/tmp")))
    h = bench_hyve(a, work)
    q = bench_qemu(a, work)
    print("| measure | hyve | QEMU | hyve / QEMU |")
    print("| --- | --- | --- | --- |")
    print(f"| save time (s) | {h['save']:.2f} | {q['save']:.2f} | {h['save'] / q['save']:.2f} |")
    print(f"| file size on disk (MiB) | {h['size'] / 2**20:.0f} | {q['size'] / 2**20:.0f} | {h['size'] / q['size']:.2f} |")
    print(f"| restore to answering on serial (s) | {h['restore']:.2f} | {q['restore']:.2f} | "
          f"{h['restore'] / q['restore']:.2f} |")
    subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
