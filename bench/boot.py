#!/usr/bin/python3
"""bench/boot: wall time from process start to the guest's /init marker,
hyve against QEMU (-M pc and -M microvm) on the same kernel and initramfs,
in one run on the same (real) KVM. Prints a table and ratios."""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
MARKER = b"HYVE-INIT-REACHED"
CMDLINE = "console=ttyS0 quiet hyve.test=cmd"


def time_to_marker(argv, timeout=180):
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = b""
    try:
        os.set_blocking(proc.stdout.fileno(), True)
        while MARKER not in seen:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                raise RuntimeError(f"{argv[0]} exited before the marker:\n{seen[-2000:].decode(errors='replace')}")
            seen += chunk
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{argv[0]}: no marker within {timeout}s")
        return time.monotonic() - start
    finally:
        proc.kill()
        proc.wait()


def commands(hyve, kernel, initrd, mem):
    qemu = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", str(mem), "-smp", "1",
            "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE]
    hyve_argv = [hyve, "-c", "1", "-m", f"{mem}M", "--kernel", kernel, "--initrd", initrd,
                 "--cmdline", CMDLINE, "-l", "com1,stdio"]
    return {
        "hyve": hyve_argv + ["bench-boot"],
        # What confinement costs: every exit's KVM_RUN and every device call passes a seccomp filter.
        "hyve, sandbox off": hyve_argv + ["-o", "sandbox=off", "bench-boot-nosandbox"],
        "qemu -M pc": qemu + ["-M", "pc"],
        "qemu -M microvm": qemu + ["-M", "microvm"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hyve", default=str(REPO / "build" / "hyve"))
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--mem", type=int, default=256, help="MiB")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    results = {}
    cmds = commands(args.hyve, args.kernel, args.initrd, args.mem)
    for run in range(args.runs):
        for name, argv in cmds.items():  # interleaved, so drift hits all alike
            results.setdefault(name, []).append(time_to_marker(argv))
            print(f"run {run + 1} {name}: {results[name][-1]:.2f} s", file=sys.stderr)
    medians = {name: statistics.median(v) for name, v in results.items()}
    fastest_qemu = min(v for k, v in medians.items() if k.startswith("qemu"))
    print("| VMM | median s to /init | runs | hyve / this |")
    print("| --- | --- | --- | --- |")
    for name, med in medians.items():
        runs = ", ".join(f"{t:.2f}" for t in results[name])
        print(f"| {name} | {med:.2f} | {runs} | {medians['hyve'] / med:.2f} |")
    print(f"\nhyve / fastest QEMU = {medians['hyve'] / fastest_qemu:.2f}")


if __name__ == "__main__":
    main()
