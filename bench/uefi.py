#!/usr/bin/python3
"""bench/uefi: firmware boot, hyve against QEMU (-machine q35,accel=kvm) with the same Debian
OVMF files and the same boot medium, in one run on the same (real) KVM. Each VMM gets a fresh
copy of OVMF_VARS_4M.fd and boots an ISO made by scripts/make-uefi-iso (El Torito; GRUB boots
the stock kernel and the test initramfs at once, no menu timeout) attached as a read-only
virtio disk, with a Bochs-compatible display the firmware drives (hyve fbuf, QEMU -device VGA).
Times, from process start, to two serial lines:
  boot manager  "BdsDxe: starting Boot..." (OVMF's boot manager starts the disk)
  /init         "HYVE-INIT-REACHED" (the initramfs' /init runs, Linux booted through GRUB)
Prints a table with medians and hyve/QEMU ratios."""
import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
CMDLINE = "console=ttyS0 quiet hyve.test=cmd"
MARKS = [("boot manager", re.compile(rb'BdsDxe: starting Boot\d+ "UEFI Misc Device"')),
         ("/init", re.compile(rb"HYVE-INIT-REACHED"))]


def time_to_marks(argv, timeout):
    """Starts argv and returns the seconds from its start to each of MARKS on its output."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, times = b"", []
    try:
        os.set_blocking(proc.stdout.fileno(), True)
        while len(times) < len(MARKS):
            if MARKS[len(times)][1].search(seen):
                times.append(time.monotonic() - start)
                continue
            chunk = proc.stdout.read1(4096)
            if not chunk:
                raise RuntimeError(f"{argv[0]} exited before {MARKS[len(times)][0]}:\n"
                                   f"{seen[-2000:].decode(errors='replace')}")
            seen += chunk
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"{argv[0]}: no {MARKS[len(times)][0]} within {timeout}s")
        return times
    finally:
        proc.kill()
        proc.wait()


def commands(hyve, iso, vars_file, rundir, mem):
    qemu = ["qemu-system-x86_64", "-machine", "q35,accel=kvm", "-cpu", "host", "-m", str(mem), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
            "-drive", f"if=pflash,format=raw,readonly=on,file={CODE}",
            "-drive", f"if=pflash,format=raw,file={vars_file}",
            "-drive", f"if=none,id=iso,format=raw,readonly=on,file={iso}",
            "-device", "virtio-blk-pci,drive=iso", "-device", "VGA",
            "-vnc", f"unix:{rundir}/bench-uefi-qemu.vnc"]
    hyve_argv = [hyve, "-c", "1", "-m", f"{mem}M", "-l", f"bootrom,{CODE},{vars_file}", "-l", "com1,stdio",
                 "-s", f"3,virtio-blk,{iso},ro", "-s", f"5,fbuf,unix={rundir}/bench-uefi.vnc",
                 "-o", f"control.socket={rundir}/bench-uefi.sock", "bench-uefi"]
    return {"hyve": hyve_argv, "qemu q35": qemu}


def make_iso(kernel, initrd, path):
    subprocess.run([str(REPO / "scripts" / "make-uefi-iso"), "--kernel", kernel, "--initrd", initrd,
                    "--cmdline", CMDLINE, "--timeout", "0", str(path)],
                   check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hyve", default=str(REPO / "build" / "hyve"))
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--mem", type=int, default=512, help="MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per boot before it counts as failed")
    args = ap.parse_args()

    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-uefi-"))
    rundir = os.environ.get("HYVE_RUNDIR", str(work))
    try:
        iso = work / "bench.iso"
        make_iso(args.kernel, args.initrd, iso)
        vars_file = work / "vm_VARS.fd"
        cmds = commands(args.hyve, iso, vars_file, rundir, args.mem)
        results = {}
        for run in range(args.runs):
            for name, argv in cmds.items():  # interleaved, so drift hits all alike
                shutil.copyfile(VARS, vars_file)  # every boot is a first boot
                for leftover in ("bench-uefi.vnc", "bench-uefi-qemu.vnc"):  # a killed VMM leaves its socket
                    pathlib.Path(rundir, leftover).unlink(missing_ok=True)
                times = time_to_marks(argv, args.timeout)
                results.setdefault(name, []).append(times)
                print(f"run {run + 1} {name}: " + ", ".join(f"{m} {t:.2f} s" for (m, _), t in zip(MARKS, times)),
                      file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("| VMM | " + " | ".join(f"median s to {m} (runs)" for m, _ in MARKS) + " |")
    print("| --- |" + " --- |" * len(MARKS))
    medians = {}
    for name, runs in results.items():
        medians[name] = [statistics.median(r[i] for r in runs) for i in range(len(MARKS))]
        cells = [f"{medians[name][i]:.2f} ({', '.join(f'{r[i]:.2f}' for r in runs)})" for i in range(len(MARKS))]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    for i, (mark, _) in enumerate(MARKS):
        print(f"hyve / QEMU to {mark} = {medians['hyve'][i] / medians['qemu q35'][i]:.2f}")
    # Linux's part alone (GRUB and the kernel), the firmware's part taken out.
    linux = {n: statistics.median(r[1] - r[0] for r in runs) for n, runs in results.items()}
    print(f"hyve / QEMU from boot manager to /init = {linux['hyve'] / linux['qemu q35']:.2f} "
          f"({linux['hyve']:.2f} s against {linux['qemu q35']:.2f} s)")


if __name__ == "__main__":
    main()
