"""An ISO image boots through the stock Debian OVMF: the test builds a UEFI-bootable ISO
(scripts/make-uefi-iso: El Torito, no emulation, whose EFI boot image is a FAT file system
holding a standalone GRUB from grub-efi-amd64-bin) with the stock kernel and the test initramfs
inside, and attaches it as a read-only virtio disk. The firmware's boot manager must pick the
disk, GRUB's menu must show on the fbuf display (GOP) and on COM1, a key must reach GRUB through
the firmware's console, and Linux must come up from the ISO to the test initramfs' /init, see
itself booted by UEFI, and read the ISO as its read-only virtio disk."""
import os
import shutil
import subprocess
import time

import pytest
from PIL import Image

from conftest import INITRD, KERNEL, REPO, RUNDIR, Guest, hyvectl, sock
from rfb_client import RfbClient

CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
CMDLINE = "console=ttyS0 quiet hyve.test=cmd"
ENTRY = "hyve UEFI ISO: Debian Linux"   # scripts/make-uefi-iso's first menu entry
# Bounds for a broken run, never waited out. Under QEMU's TCG on the development machine the same
# ISO showed GRUB's menu 8-11 s after start and /init 17-19 s after Enter; the test host (one
# emulated CPU, nested KVM) is slower: the test prints its timings.
FIRMWARE_TIMEOUT = 900
LINUX_TIMEOUT = 900
SCREEN_TIMEOUT = 120
# GRUB's gfxterm palette (the EGA colours): the highlighted entry is white on blue
# (menu_color_highlight in scripts/make-uefi-iso), the frame and the other text light gray.
KEY_RETURN = 0xFF0D
BLUE, LIGHT_GRAY, WHITE = (0, 0, 0xA8), (0xA8, 0xA8, 0xA8), (0xFE, 0xFE, 0xFE)


def required(path, package):
    if not os.path.exists(path):
        pytest.fail(f"{path} not found: install the {package} package (scripts/install-deps)",
                    pytrace=False)


@pytest.fixture(scope="module")
def iso(tmp_path_factory):
    """The test ISO: GRUB waits for a key (--timeout -1), so the menu stays until the test has
    looked at it and pressed Enter."""
    for path, package in ((CODE, "ovmf"), ("/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin")):
        required(path, package)
    out = tmp_path_factory.mktemp("uefi-iso") / "test.iso"
    r = subprocess.run([str(REPO / "scripts" / "make-uefi-iso"), "--kernel", str(KERNEL),
                        "--initrd", str(INITRD), "--cmdline", CMDLINE, "--timeout", "-1", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return out


def near(pixel, want, tol=8):
    return all(abs(c - w) <= tol for c, w in zip(pixel, want))


def rows_of(img, colour, fraction):
    """Rows in which at least fraction of the pixels have colour."""
    w, h = img.size
    px = img.load()
    return [y for y in range(h) if sum(1 for x in range(w) if near(px[x, y], colour)) >= fraction * w]


def bands(rows):
    """Runs of consecutive row numbers, as (first, last)."""
    out = []
    for y in rows:
        if out and y == out[-1][1] + 1:
            out[-1] = (out[-1][0], y)
        else:
            out.append((y, y))
    return out


def grub_menu_problem(img):
    """Why img is not GRUB's menu as gfxterm draws it, or None: a frame of two long light-gray
    lines, inside it near the top one bar of blue (the highlighted entry) one text line high with
    white letters on it, and light-gray text (the other entry) under the bar."""
    w, h = img.size
    px = img.load()
    frame = bands(rows_of(img, LIGHT_GRAY, 0.8))
    if len(frame) < 2:
        return f"no menu frame (long light-gray lines at rows {frame})"
    top, bottom = frame[0][1], frame[-1][0]
    bars = [b for b in bands(rows_of(img, BLUE, 0.5)) if top < b[0] and b[1] < bottom]
    if len(bars) != 1:
        return f"expected one highlighted entry inside the frame (rows {top}-{bottom}), found blue bars {bars}"
    first, last = bars[0]
    if not 10 <= last - first + 1 <= 40 or first - top > 40:
        return f"the blue bar at rows {first}-{last} is not one text line at the top of the frame at {top}"
    letters = sum(1 for y in range(first, last + 1) for x in range(w) if near(px[x, y], WHITE))
    if letters < 100:
        return f"only {letters} white pixels (the entry's title) on the blue bar"
    below = sum(1 for y in range(last + 1, min(last + 40, bottom)) for x in range(w)
                if near(px[x, y], LIGHT_GRAY))
    if below < 100:
        return f"only {below} light-gray pixels (the second entry) under the bar"
    return None


def screenshot_until_menu(name, path):
    """Takes screenshots until one shows GRUB's menu (gfxterm may draw after the serial copy);
    returns the image, or fails with the last reason."""
    deadline = time.monotonic() + SCREEN_TIMEOUT
    while True:
        r = hyvectl(name, "screenshot", path)
        assert r.returncode == 0, r.stderr
        img = Image.open(path).convert("RGB")
        problem = grub_menu_problem(img)
        if problem is None:
            return img
        assert time.monotonic() < deadline, f"{path}: {problem}"
        time.sleep(1)


def vnc_path(name):
    return os.path.join(RUNDIR, f"{name}.vnc")


def start(name, iso, tmp_path, code=CODE, vars_=VARS, sectorsize=512):
    """hyve with the firmware (and a fresh copy of its variable store), the ISO as a read-only
    virtio disk in slot 3, the display in slot 5; serial on the Guest's pipes."""
    bootrom = f"bootrom,{code}"
    if vars_:
        vars_copy = tmp_path / "vm_VARS.fd"
        shutil.copyfile(vars_, vars_copy)
        bootrom += f",{vars_copy}"
    os.makedirs(RUNDIR, exist_ok=True)
    return Guest(["-c", "1", "-m", "512M", "-l", bootrom, "-l", "com1,stdio",
                  "-s", f"3,virtio-blk,{iso},ro,sectorsize={sectorsize}", "-s", f"5,fbuf,unix={vnc_path(name)}",
                  "-o", f"control.socket={sock(name)}", name])


def wait_for_grub_menu(g, name, tmp_path):
    """The boot manager finds the disk by itself (no boot order given) and loads
    \\EFI\\BOOT\\BOOTX64.EFI from the El Torito image: GRUB, whose menu shows on COM1 and on the
    display. Returns the match of the menu entry on COM1."""
    g.wait_for(r'BdsDxe: starting Boot\d+ "UEFI Misc Device" from PciRoot\(0x0\)/Pci\(0x3,0x0\)',
               FIRMWARE_TIMEOUT)
    g.wait_for(r"GNU GRUB", FIRMWARE_TIMEOUT)
    menu = g.wait_for(ENTRY, FIRMWARE_TIMEOUT)
    screenshot_until_menu(name, tmp_path / "grub.png")
    return menu


@pytest.mark.parametrize("sectorsize", [512, 2048])
def test_iso_boots_through_firmware_and_grub(iso, tmp_path, sectorsize):
    """sectorsize=512 is an ISO file on a disk (the firmware reads the El Torito catalog in 2 KiB
    units made of four blocks); 2048 presents it as a CD-ROM drive does."""
    name = f"uefi-iso-{sectorsize}"
    t0 = time.monotonic()
    g = start(name, iso, tmp_path, sectorsize=sectorsize)
    try:
        menu = wait_for_grub_menu(g, name, tmp_path)
        t_menu = time.monotonic() - t0

        # Enter on COM1 reaches GRUB through the firmware's terminal (GRUB reads the firmware's
        # console); GRUB then loads the kernel and initramfs from the ISO's file system.
        g.send("\r")
        g.wait_for(r"GRUB: loading Linux from the ISO", 120, menu.end())
        g.wait_for(r"HYVE-INIT-REACHED", LINUX_TIMEOUT)
        t_init = time.monotonic() - t0
        g.wait_for(r"HYVE-CMD-READY", LINUX_TIMEOUT)

        rc, out = g.run("cat /proc/cmdline; test -d /sys/firmware/efi && echo UEFI-BOOTED; "
                        "cat /sys/block/vda/ro /sys/block/vda/queue/logical_block_size /sys/block/vda/size; "
                        "dd if=/dev/vda bs=2048 skip=16 count=1 2>/dev/null | head -c 6 | tail -c 5; echo")
        assert rc == 0, out
        lines = out.split("\n")
        assert CMDLINE in lines[0], out             # what GRUB's menu entry passed
        assert lines[1] == "UEFI-BOOTED", out       # the kernel was started by the firmware
        assert lines[2] == "1", out                 # ro
        assert lines[3] == str(sectorsize), out
        assert int(lines[4]) * 512 == iso.stat().st_size, out
        assert lines[5] == "CD001", out             # the ISO 9660 primary volume descriptor
        # Linux found the firmware's framebuffer (GOP) for its console.
        rc, out = g.run("dmesg | grep 'EFI VGA frame buffer device'")
        assert rc == 0, out
        print(f"\nsectorsize={sectorsize}: GRUB's menu {t_menu:.1f} s after hyve started, "
              f"/init {t_init - t_menu:.1f} s after Enter")
    finally:
        g.kill()


@pytest.mark.parametrize("code,vars_", [("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
                                        ("/usr/share/ovmf/OVMF.fd", None)], ids=["2M-code-and-vars", "combined"])
def test_other_firmware_files_reach_grub(iso, tmp_path, code, vars_):
    """The 2 MiB builds of the same ovmf package: code and variables in two files, and the
    combined image alone (variables in memory)."""
    name = "uefi-iso-" + os.path.basename(code).split(".")[0].lower()
    t0 = time.monotonic()
    g = start(name, iso, tmp_path, code=code, vars_=vars_)
    try:
        wait_for_grub_menu(g, name, tmp_path)
        print(f"\n{code}: GRUB's menu {time.monotonic() - t0:.1f} s after hyve started")
    finally:
        g.kill()


def wait_control_socket(g, name, timeout=300):
    """Until the restored hyve has its control socket (opened after the display's listener)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(sock(name)):
        assert g.proc.poll() is None, f"hyve exited with {g.proc.poll()}: {g.stderr.decode(errors='replace')}"
        assert time.monotonic() < deadline, f"no {sock(name)}: {g.stderr.decode(errors='replace')}"
        time.sleep(0.2)


def test_snapshot_in_grubs_menu(iso, tmp_path):
    """A snapshot taken while GRUB's menu waits for a key: the restored VM shows the same picture,
    and Return typed over VNC (PS/2 keyboard, read by GRUB through the firmware's console) starts
    the highlighted entry, so Linux comes up from the ISO."""
    name = "uefi-iso-snapshot"
    g = start(name, iso, tmp_path)
    try:
        wait_for_grub_menu(g, name, tmp_path)
        before = screenshot_until_menu(name, tmp_path / "grub-before.png")
        snap = tmp_path / "grub.snap"
        r = hyvectl(name, "snapshot", str(snap), "--exit")
        assert r.returncode == 0, r.stderr
        assert g.wait_exit(300) == 1, g.stderr.decode(errors="replace")   # powered off
        g = Guest(["-r", str(snap), "-l", "com1,stdio", "-o", f"control.socket={sock(name)}", name])
        wait_control_socket(g, name)
        after = screenshot_until_menu(name, tmp_path / "grub-after.png")
        assert after.tobytes() == before.tobytes(), "the restored menu differs (grub-before.png, grub-after.png)"
        client = RfbClient(vnc_path(name))
        try:
            start_at = len(g.output)
            client.key(KEY_RETURN, 1)
            client.key(KEY_RETURN, 0)
            g.wait_for(r"GRUB: loading Linux from the ISO", 120, start_at)
        finally:
            client.close()
        g.wait_for(r"HYVE-CMD-READY", LINUX_TIMEOUT)
        rc, out = g.run("test -d /sys/firmware/efi && echo UEFI-BOOTED")
        assert rc == 0 and "UEFI-BOOTED" in out, out
    finally:
        g.kill()
