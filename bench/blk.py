#!/usr/bin/python3
"""bench/blk: in-guest disk throughput, hyve against QEMU, on the same raw
disk, kernel and initramfs, interleaved runs on the same (real) KVM; the disk
is a virtio-blk device (default) or, with --bus ahci, a SATA disk on an AHCI
controller (QEMU: -device ahci -device ide-hd; hyve: -s 4,ahci-hd,DISK).

Each guest runs bench/blk_helper (static, carried on the disk itself so both
guests run the same binary) against the disk (/dev/vda, /dev/sda) with O_DIRECT:
  seqwrite  1 MiB writes + fdatasync,  seqread  1 MiB reads,
  randread  4 KiB reads at random 4 KiB-aligned offsets.
QEMU: -drive file=DISK,if=none,id=d,format=raw,cache=none,aio=threads
      -device virtio-blk-pci,drive=d    (-M pc, -accel kvm, -cpu host)
hyve: -s 4,virtio-blk,DISK,nocache   (O_DIRECT, like cache=none)
      -s 4,virtio-blk,DISK           (host page cache)

Run it on real KVM, e.g. inside the test host:
  tests/testhost/run /usr/bin/python3 bench/blk.py
There the disk is a RAM block device (brd, loaded from the guest kernel's
modules: the test host's tmpfs has no O_DIRECT for QEMU's cache=none);
elsewhere a file under --dir. Prints a table and hyve/QEMU ratios.
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
CACHE = pathlib.Path(os.environ.get("HYVE_CACHE", REPO / ".cache"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import Guest  # noqa: E402  (the serial command-loop driver of the tests)

CMDLINE = "console=ttyS0 quiet hyve.test=cmd"
DATA_OFF_MIB = 16
HEADER = 4096


def default_kernel():
    found = sorted((CACHE / "kernel" / "root" / "boot").glob("vmlinuz-*"))
    return str(found[-1]) if found else None


def build_helper():
    out = CACHE / "bench" / "blk_helper"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(REPO / "bench" / "blk_helper.c")], check=True)
    return out.read_bytes()


def ram_disk(size_mib):
    """A brd RAM disk in the throwaway test host; None elsewhere or when it cannot be had."""
    if os.environ.get("HYVE_TESTHOST") != "1":
        return None
    if not os.path.exists("/dev/ram0"):
        kver = (CACHE / "kernel" / "version").read_text().strip()
        ko = CACHE / "kernel" / "root" / "lib" / "modules" / kver / "kernel" / "drivers" / "block" / "brd.ko"
        r = subprocess.run(["insmod", str(ko), "rd_nr=1", f"rd_size={size_mib * 1024}"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            print(f"brd: {r.stderr.strip()}", file=sys.stderr)
            return None
        for _ in range(50):
            if os.path.exists("/dev/ram0"):
                break
            time.sleep(0.1)
    return "/dev/ram0" if os.path.exists("/dev/ram0") else None


def prepare_disk(path, helper, size_mib):
    header = f"HYVEBLKBENCH {len(helper)}\n".encode().ljust(HEADER, b"\0")
    mode = "r+b" if path.startswith("/dev/") else "wb"
    with open(path, mode) as f:
        if mode == "wb":
            f.truncate(size_mib << 20)
        f.write(header + helper)
        # Data region with nonzero contents, so reads are of real data.
        f.seek(DATA_OFF_MIB << 20)
        chunk = os.urandom(1 << 20)
        for _ in range(size_mib - DATA_OFF_MIB):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())


BUSES = {
    # bus: (QEMU devices, hyve's -s model, the disk in the guest)
    "virtio": (["-device", "virtio-blk-pci,drive=d"], "virtio-blk", "/dev/vda"),
    "ahci": (["-device", "ahci,id=ahci", "-device", "ide-hd,drive=d,bus=ahci.0"], "ahci-hd", "/dev/sda"),
}


def commands(hyve, kernel, initrd, disk, cache_mode, bus):
    qemu_dev, model, _ = BUSES[bus]
    qemu = ["-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1", "-M", "pc",
            "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE,
            "-drive", f"file={disk},if=none,id=d,format=raw,cache={cache_mode},aio=threads"] + qemu_dev
    def hyve_args(opts):
        return ["-c", "1", "-m", "256M", "--kernel", kernel, "--initrd", initrd, "--cmdline", CMDLINE,
                "-l", "com1,stdio", "-s", f"4,{model},{disk}{opts}", "bench-blk"]
    cmds = {"hyve": (hyve, hyve_args(",nocache" if cache_mode == "none" else ""))}
    if cache_mode == "none":
        cmds["hyve buffered"] = (hyve, hyve_args(""))
    cmds["qemu"] = ("qemu-system-x86_64", qemu)
    return cmds


def run_guest(binary, args, helper_len, size_mib, nrand, dev):
    g = Guest(args, binary=binary)
    try:
        g.wait_for("HYVE-CMD-READY", timeout=600)
        blocks = (helper_len + 4095) // 4096
        rc, out = g.run(f"dd if={dev} of=/tmp/h bs=4096 skip=1 count={blocks} 2>/dev/null && "
                        f"truncate -s {helper_len} /tmp/h && chmod +x /tmp/h && echo ok", timeout=300)
        assert rc == 0 and "ok" in out, out
        results = {}
        span = size_mib - 2 * DATA_OFF_MIB
        for mode, extra in (("seqwrite", ""), ("seqread", ""), ("randread", f" {nrand}")):
            rc, out = g.run(f"/tmp/h {mode} {dev} {DATA_OFF_MIB} {span}{extra}", timeout=900)
            line = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
            assert rc == 0 and line, out
            _, _, nbytes, secs, mibs, iops = line[0].split()
            results[mode] = float(iops) if mode == "randread" else float(mibs)
        g.send("poweroff -f\n")
        g.wait_exit(120)
        return results
    finally:
        g.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hyve", default=os.environ.get("HYVE_BIN", str(REPO / "build" / "hyve")))
    ap.add_argument("--kernel", default=os.environ.get("HYVE_KERNEL") or default_kernel())
    ap.add_argument("--initrd", default=os.environ.get("HYVE_INITRD", str(CACHE / "initramfs-test.cpio.gz")))
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/var/tmp"), help="where the disk file goes")
    ap.add_argument("--size", type=int, default=160, help="disk MiB (the middle part is measured)")
    ap.add_argument("--rand", type=int, default=4000, help="random reads per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bus", choices=sorted(BUSES), default="virtio", help="how the guest sees the disk")
    args = ap.parse_args()

    helper = build_helper()
    disk = ram_disk(args.size)
    cache_mode = "none"
    if not disk:
        disk = str(pathlib.Path(args.dir) / "hyve-bench-blk.img")
        # QEMU's cache=none needs O_DIRECT; tmpfs before Linux 6.6 has none.
        try:
            pathlib.Path(disk).touch()
            os.close(os.open(disk, os.O_RDONLY | os.O_DIRECT))
        except OSError:
            cache_mode = "writeback"
    prepare_disk(disk, helper, args.size)
    print(f"disk {disk} ({args.size} MiB) on {args.bus}, QEMU cache={cache_mode}, {args.runs} runs", file=sys.stderr)

    cmds = commands(args.hyve, args.kernel, args.initrd, disk, cache_mode, args.bus)
    results = {}
    for run in range(args.runs):
        for name, (binary, argv) in cmds.items():  # interleaved, so drift hits both alike
            r = run_guest(binary, argv, len(helper), args.size, args.rand, BUSES[args.bus][2])
            for mode, v in r.items():
                results.setdefault(mode, {}).setdefault(name, []).append(v)
            print(f"run {run + 1} {name}: " + ", ".join(f"{m} {v:.1f}" for m, v in r.items()), file=sys.stderr)

    units = {"seqwrite": "MiB/s", "seqread": "MiB/s", "randread": "IOPS"}
    print(f"{args.bus} disk; QEMU cache={cache_mode}; hyve {'nocache (O_DIRECT)' if cache_mode == 'none' else 'buffered'}"
          + ("; 'hyve buffered' uses the host page cache" if cache_mode == "none" else ""))
    print("| test | VMM | median | runs | VMM / QEMU |")
    print("| --- | --- | --- | --- | --- |")
    for mode, by in results.items():
        q = statistics.median(by["qemu"])
        for name, vals in by.items():
            med = statistics.median(vals)
            print(f"| {mode} ({units[mode]}) | {name} | {med:.1f} | {', '.join(f'{v:.1f}' for v in vals)} | "
                  f"{med / q:.2f} |")


if __name__ == "__main__":
    main()
