"""Boot media for the UEFI tests, built where the test runs (inside the test host, whose root is
this machine's): a disk image with an MBR partition table and one EFI system partition (type
0xEF), a FAT file system made by mkfs.vfat and filled by mtools (no mounting, no root needed).

    disk = EspImage(path)
    disk.add_file("EFI/BOOT/BOOTX64.EFI", SYSTEMD_BOOT)
    disk.add_text("loader/loader.conf", "timeout menu-force\n")
    disk.build()
"""
import os
import pathlib
import shutil
import struct
import subprocess

import pytest

SYSTEMD_BOOT = pathlib.Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
SECTOR = 512
ESP_START = 2048          # sectors: the partition starts at 1 MiB, as partitioning tools align it
MBR_TYPE_ESP = 0xEF


def tool(name, package):
    """The path of a host tool, or a failure naming the Debian package (scripts/install-deps)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        pytest.fail(f"{name} not found: install the {package} package (scripts/install-deps)", pytrace=False)
    return path


def required_file(path, package):
    if not pathlib.Path(path).is_file():
        pytest.fail(f"{path} not found: install the {package} package (scripts/install-deps)", pytrace=False)
    return pathlib.Path(path)


def mbr(start, sectors, part_type):
    """A master boot record with one primary partition; CHS fields say "use LBA" (0xFFFFFE)."""
    entry = struct.pack("<B3sB3sII", 0x00, b"\xfe\xff\xff", part_type, b"\xfe\xff\xff", start, sectors)
    return bytes(446) + entry + bytes(16 * 3) + b"\x55\xaa"


class EspImage:
    def __init__(self, path, size_mb=64):
        self.path = pathlib.Path(path)
        self.size_mb = size_mb
        self.files = []          # (path inside the ESP, host file)
        self.scratch = self.path.with_name(self.path.name + ".d")
        self.scratch.mkdir(exist_ok=True)

    def add_file(self, inside, host_path):
        self.files.append((inside, pathlib.Path(host_path)))

    def add_text(self, inside, text):
        host = self.scratch / inside.replace("/", "_")
        host.write_text(text)
        self.add_file(inside, host)

    def build(self):
        mkfs = tool("mkfs.vfat", "dosfstools")
        mcopy, mmd = tool("mcopy", "mtools"), tool("mmd", "mtools")
        fat = self.scratch / "esp.fat"
        fat_sectors = (self.size_mb << 20) // SECTOR - ESP_START
        with open(fat, "wb") as f:
            f.truncate(fat_sectors * SECTOR)
        run([mkfs, "-n", "HYVE-ESP", str(fat)])
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        dirs = sorted({str(pathlib.PurePosixPath(inside).parents[i])
                       for inside, _ in self.files
                       for i in range(len(pathlib.PurePosixPath(inside).parents) - 1)},
                      key=lambda d: d.count("/"))
        for d in dirs:
            run([mmd, "-i", str(fat), f"::/{d}"], env)
        for inside, host in self.files:
            run([mcopy, "-i", str(fat), str(host), f"::/{inside}"], env)
        with open(self.path, "wb") as disk, open(fat, "rb") as src:
            disk.write(mbr(ESP_START, fat_sectors, MBR_TYPE_ESP))
            disk.seek(ESP_START * SECTOR)
            shutil.copyfileobj(src, disk, 1 << 20)
        shutil.rmtree(self.scratch)
        return self.path


def run(argv, env=None):
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, f"{' '.join(map(str, argv))} failed ({r.returncode}): {r.stderr}"


def systemd_boot_esp(path, kernel, initrd, entries, loader_conf):
    """An ESP whose removable-media loader (EFI/BOOT/BOOTX64.EFI) is Debian's systemd-boot, with
    kernel and initrd and one loader entry per (name, title, options) in entries, in that order
    (sort-key = name)."""
    disk = EspImage(path)
    disk.add_file("EFI/BOOT/BOOTX64.EFI", required_file(SYSTEMD_BOOT, "systemd-boot-efi"))
    disk.add_file("vmlinuz", kernel)
    disk.add_file("initrd", initrd)
    disk.add_text("loader/loader.conf", loader_conf)
    for name, title, options in entries:
        disk.add_text(f"loader/entries/{name}.conf",
                      f"title {title}\nsort-key {name}\nlinux /vmlinuz\ninitrd /initrd\noptions {options}\n")
    return disk.build()
