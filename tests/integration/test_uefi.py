"""UEFI guests as a user sees them: Debian's stock OVMF (OVMF_CODE_4M.fd with a per-VM copy of
OVMF_VARS_4M.fd) under hyve with the sandbox on, its screen over VNC and hyvectl screenshot.

- With no boot media the firmware starts its UEFI Shell: COM1 shows the prompt and the GOP
  framebuffer shows the Shell's banner in the firmware's text layout and colours; keys typed over
  VNC reach the Shell; a snapshot taken at the prompt restores to the same picture and takes keys.
  Without an i8042, keys reach the Shell through xHCI's USB keyboard.
- An EFI system partition built here (esp_image.py) holds Debian's systemd-boot, the stock kernel
  (an EFI stub) and the test initramfs: systemd-boot's menu waits (timeout menu-force) until
  keys sent over VNC choose the second entry; Linux then runs on the firmware's framebuffer
  (efifb) with ACPI tables that came from hyve through fw_cfg, a second virtio disk and
  virtio-net; a snapshot after that restores the same picture and takes keys; a variable the
  guest writes through efivarfs is in the VARS file and there when hyve starts again with it.

Each OVMF boot costs minutes in the emulated test host, so the tests of one guest share it
(module fixtures, tests in file order); each test still checks only its own claim.
"""
import os
import pathlib
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
from PIL import Image

from conftest import INITRD, KERNEL, Guest, hyvectl, sock
from esp_image import required_file, systemd_boot_esp, tool
from rfb_client import RfbClient

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
POWERED_OFF = 1
# Failure bounds, not waits (each test prints what it measured): in the test host (TCG, one CPU)
# QEMU's OVMF reaches its Shell in about 45 s (test_uefi_testhost.py).
FIRMWARE_TIMEOUT = 600
LINUX_TIMEOUT = 900
SCREEN_TIMEOUT = 120

# EDK2's graphics console: glyphs of 8x19 pixels, text in the EFI palette.
CELL_W, CELL_H = 8, 19
BLACK, LIGHTGRAY, WHITE, YELLOW = (0, 0, 0), (152, 152, 152), (255, 255, 255), (255, 255, 0)
# X keysyms (RFB key events).
KEY_DOWN, KEY_RETURN = 0xFF54, 0xFF0D


def firmware_args(name, vars_path, port, *extra, mem="512M"):
    return ["-c", 1, "-m", mem, "-l", f"bootrom,{OVMF_CODE},{vars_path}", "-l", "com1,stdio",
            "-s", f"5,fbuf,tcp=127.0.0.1:{port}", "-o", f"control.socket={sock(name)}", *extra, name]


def fresh_vars(path):
    required_file(OVMF_CODE, "ovmf")
    shutil.copyfile(required_file(OVMF_VARS, "ovmf"), path)
    return path


def screenshot(name, path):
    r = hyvectl(name, "screenshot", path)
    assert r.returncode == 0, f"hyvectl screenshot: {r.stderr}"
    return Image.open(path).convert("RGB")


def screenshot_until(name, path, ok, timeout=SCREEN_TIMEOUT):
    """Screenshots until ok(img) holds: the firmware draws the framebuffer after (or before) it
    writes the same text to COM1. Returns the last picture; the caller asserts on it."""
    deadline = time.monotonic() + timeout
    while True:
        img = screenshot(name, path)
        if ok(img) or time.monotonic() > deadline:
            return img
        time.sleep(0.5)


def vnc_picture(client):
    client.update(incremental=False)
    return Image.frombytes("RGB", (client.width, client.height), bytes(client.pixels), "raw", "BGRX")


def wait_listening(g, name, port, timeout=120):
    """Until the (restored) hyve accepts VNC connections and has its control socket, which it
    opens after the display's listener."""
    deadline = time.monotonic() + timeout
    while True:
        assert g.proc.poll() is None, f"hyve exited with {g.proc.poll()}: {g.stderr.decode(errors='replace')}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            if os.path.exists(sock(name)):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no VNC on {port} or no {sock(name)}: {g.stderr.decode(errors='replace')}"
        time.sleep(0.2)


def type_text(client, text):
    """Presses and releases one key per character (lower case, digits, space, '-', '.', Return
    for a newline): X keysyms equal the ASCII codes for these."""
    for ch in text:
        keysym = KEY_RETURN if ch == "\n" else ord(ch)
        assert ch == "\n" or ch in "abcdefghijklmnopqrstuvwxyz0123456789 -./", ch
        client.key(keysym, 1)
        client.key(keysym, 0)


ESCAPES = r"(?:\x1b\[[0-9;]*[A-Za-z])*"


def type_into_firmware(client, g, text, start):
    """Types text one key at a time, each after the firmware echoed the ones before on COM1, as a
    person types. OVMF's PS/2 driver polls every 20 ms, reads every byte the controller has into
    a queue of 32 and drops the oldest when it is full; hyve hands the controller the next byte
    as soon as one is read, so a burst of more than 16 keys between two polls loses keys
    (docs/hyve.md, "Known limitations"). Returns the offset of the echo."""
    for i in range(len(text)):
        type_text(client, text[i])
        if text[i] != "\n":
            start = g.wait_for(ESCAPES.join(map(re.escape, text[:i + 1])), FIRMWARE_TIMEOUT, start).start()
    return start


def snapshot_and_restore(g, name, snap):
    """hyvectl snapshot --exit, then a new hyve restoring it; returns the restored guest."""
    r = hyvectl(name, "snapshot", snap, "--exit")
    assert r.returncode == 0, r.stderr
    assert g.wait_exit(300) == POWERED_OFF, g.stderr.decode(errors="replace")
    return Guest(["-r", snap, "-l", "com1,stdio", "-o", f"control.socket={sock(name)}", name])


# ---- the Shell's screen, as the test understands it ----

def text_rows(img):
    """Groups the lit scanlines (not black) into rows of text: [(top, bottom, colours, left, right)].
    Works on whole scanlines through PIL (the test host's Python is emulated, pixel loops are slow)."""
    w, h = img.size
    rows = []
    for y in range(h):
        line = img.crop((0, y, w, y + 1))
        box = line.getbbox()   # None when the scanline is all black
        if not box:
            continue
        cols = {c for _, c in line.getcolors(w)} - {BLACK}
        if rows and y - rows[-1][1] <= 2:
            top, _, seen, left, right = rows[-1]
            rows[-1] = (top, y, seen | cols, min(left, box[0]), max(right, box[2] - 1))
        else:
            rows.append((y, y, cols, box[0], box[2] - 1))
    return rows


def shell_banner_problem(img):
    """Why img is not the UEFI Shell's start screen (None when it is): five rows of banner
    ("UEFI Interactive Shell", "EDK II", "UEFI v2.70", "map: No mapping found.", "Press ESC ...
    startup.nsh ...") and the yellow "Shell> " prompt, one text row (19 pixels) apart, all
    starting in the same column of a text window centred on the screen, in the EFI palette:
    light grey text, white "map" and "ESC", yellow "startup.nsh" and prompt."""
    w, h = img.size
    colours = set(img.getdata())
    if colours - {BLACK, LIGHTGRAY, WHITE, YELLOW}:
        return f"colours outside the EFI text palette: {sorted(colours - {BLACK, LIGHTGRAY, WHITE, YELLOW})[:5]}"
    rows = text_rows(img)
    if len(rows) != 6:
        return f"{len(rows)} rows of text, not 6: {[(r[0], r[1]) for r in rows]}"
    tops = [r[0] for r in rows]
    if any(b - a != CELL_H for a, b in zip(tops, tops[1:])):
        return f"rows not {CELL_H} pixels apart: {tops}"
    left = min(r[3] for r in rows)
    if any(r[3] - left >= CELL_W * 6 for r in rows) or rows[-1][3] - left >= CELL_W:
        return f"rows do not start in the first column ({left}): {[r[3] for r in rows]}"
    if (w - 2 * left) % CELL_W or max(r[4] for r in rows) >= w - left:
        return f"text window not centred: left margin {left}, screen width {w}"
    want = [{LIGHTGRAY}, {LIGHTGRAY}, {LIGHTGRAY}, {LIGHTGRAY, WHITE}, {LIGHTGRAY, WHITE, YELLOW},
            {YELLOW, LIGHTGRAY}]   # the prompt's row holds the cursor, light grey
    got = [r[2] for r in rows]
    if got != want:
        return f"row colours {got}, want {want}"
    top, bottom = rows[-1][0], rows[-1][1]
    band = img.crop((0, top, w, bottom + 1)).load()
    yellow_right = max(x for y in range(bottom + 1 - top) for x in range(w) if band[x, y] == YELLOW)
    if yellow_right >= left + 6 * CELL_W:
        return f"the yellow prompt is wider than 'Shell>' ({left}..{yellow_right})"
    return None


# ---- the Shell ----

@pytest.fixture(scope="module")
def shell_vm(tmp_path_factory):
    work = tmp_path_factory.mktemp("uefi-shell")
    name, port = "uefi-shell", 5961
    vars_path = fresh_vars(work / "VARS.fd")
    started = time.monotonic()
    # No disk, no NIC: the boot manager finds nothing else and starts the built-in Shell.
    g = Guest(firmware_args(name, vars_path, port))
    state = {"guest": g, "name": name, "port": port, "work": work, "started": started}
    yield state
    state["guest"].kill()


def test_ovmf_reaches_the_shell_on_serial_and_screen(shell_vm):
    g, name = shell_vm["guest"], shell_vm["name"]
    g.wait_for(r'BdsDxe: starting Boot\d+ "EFI Internal Shell"', FIRMWARE_TIMEOUT)
    g.wait_for(r"Shell> ", FIRMWARE_TIMEOUT)
    print(f"OVMF Shell prompt on COM1 {time.monotonic() - shell_vm['started']:.0f} s after hyve started")
    img = screenshot_until(name, shell_vm["work"] / "shell.png", lambda i: shell_banner_problem(i) is None)
    problem = shell_banner_problem(img)
    assert problem is None, f"the screen is not the Shell's: {problem} (saved {shell_vm['work'] / 'shell.png'})"
    # A VNC client sees the same picture, pixel for pixel.
    client = RfbClient(("127.0.0.1", shell_vm["port"]))
    try:
        assert (client.width, client.height) == img.size
        assert vnc_picture(client).tobytes() == img.tobytes()
    finally:
        client.close()
    shell_vm["shell_picture"] = img


def shell_echo_problem(img, before_rows):
    """The typed command and its output appear as new rows below the prompt."""
    rows = text_rows(img)
    return None if len(rows) >= before_rows + 2 else f"{len(rows)} rows of text"


def test_shell_snapshot_restores_picture_and_takes_keys(shell_vm):
    g, name, port, work = shell_vm["guest"], shell_vm["name"], shell_vm["port"], shell_vm["work"]
    g.wait_for(r"Shell> ", FIRMWARE_TIMEOUT)
    before = screenshot_until(name, work / "before.png", lambda i: shell_banner_problem(i) is None)
    assert shell_banner_problem(before) is None, shell_banner_problem(before)

    g = shell_vm["guest"] = snapshot_and_restore(g, name, work / "shell.snap")
    wait_listening(g, name, port)
    after = screenshot(name, work / "after.png")
    assert after.tobytes() == before.tobytes(), "the restored screen differs (saved before.png, after.png)"

    # Keys over VNC reach the restored Shell (PS/2 keyboard): it echoes them and runs the command.
    client = RfbClient(("127.0.0.1", port))
    try:
        assert vnc_picture(client).tobytes() == before.tobytes()
        start = type_into_firmware(client, g, "echo hyve-typed-keys\n", len(g.output))
        # The command's output: a line of its own (the echo of the typed line has "echo " before).
        out = g.wait_for("\n" + ESCAPES + "hyve-typed-keys", FIRMWARE_TIMEOUT, start)
        g.wait_for(r"Shell> ", FIRMWARE_TIMEOUT, out.end())
        img = screenshot_until(name, work / "typed.png", lambda i: shell_echo_problem(i, 6) is None)
        assert shell_echo_problem(img, 6) is None, shell_echo_problem(img, 6)
    finally:
        client.close()


def test_usb_keyboard_drives_the_shell(tmp_path):
    """With no i8042 (lpc.i8042=false) the only keyboard is xHCI's USB boot keyboard: the
    firmware's own USB stack (XhciDxe, UsbKbDxe) configures it, and keys typed over VNC reach
    the Shell through it."""
    name, port = "uefi-usbkbd", 5963
    g = Guest(firmware_args(name, fresh_vars(tmp_path / "VARS.fd"), port, "-s", "6,xhci,kbd",
                            "-o", "lpc.i8042=false"))
    try:
        g.wait_for(r"Shell> ", FIRMWARE_TIMEOUT)
        client = RfbClient(("127.0.0.1", port))
        try:
            start = type_into_firmware(client, g, "echo usb-typed-keys\n", len(g.output))
            g.wait_for("\n" + ESCAPES + "usb-typed-keys", FIRMWARE_TIMEOUT, start)
        finally:
            client.close()
    finally:
        g.kill()


# ---- Linux through systemd-boot ----

TAP = "hyveuefi0"
HOST_IP, GUEST_IP = "10.78.0.1", "10.78.0.2"
MAC = "02:11:22:33:44:66"
LINUX_OPTIONS = "console=tty0 console=ttyS0 quiet hyve.test=cmd"
ENTRIES = [("hyve-a", "hyve first entry", f"{LINUX_OPTIONS} hyve.entry=first"),
           ("hyve-b", "hyve second entry", f"{LINUX_OPTIONS} hyve.entry=second")]
# The menu waits for a key however long it takes; the first entry is preselected.
LOADER_CONF = "timeout menu-force\ndefault hyve-a.conf\neditor no\n"
# A variable the guest writes: attributes NV|BS|RT (7), then the data.
VAR_GUID = "5c4a3e27-0b4c-4c5e-9e6d-6879766568ff"
VAR_NAME = f"HyveTestVar-{VAR_GUID}"
VAR_DATA = "hyve-variable-persists"


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def guest_ok(g, cmd, timeout=120):
    rc, out = g.run(cmd, timeout=timeout)
    assert rc == 0, f"{cmd!r} failed ({rc}): {out}"
    return out


def make_ext4(path, mb=32):
    with open(path, "wb") as f:
        f.truncate(mb << 20)
    subprocess.run([tool("mkfs.ext4", "e2fsprogs"), "-q", "-F", str(path)], check=True, capture_output=True)


def choose_second_entry(g, port):
    """Waits for systemd-boot's menu on COM1, then presses Down and Return over VNC."""
    g.wait_for(ENTRIES[1][1], LINUX_TIMEOUT)
    client = RfbClient(("127.0.0.1", port))
    try:
        for keysym in (KEY_DOWN, KEY_RETURN):
            client.key(keysym, 1)
            client.key(keysym, 0)
        client.update(incremental=False)   # a round trip: the keys were read before we close
    finally:
        client.close()


@pytest.fixture(scope="module")
def linux_vm(tmp_path_factory):
    work = tmp_path_factory.mktemp("uefi-linux")
    name, port = "uefi-linux", 5962
    ip("link", "del", TAP, check=False)
    ip("tuntap", "add", TAP, "mode", "tap")
    ip("addr", "add", f"{HOST_IP}/24", "dev", TAP)
    ip("link", "set", TAP, "up")
    esp = systemd_boot_esp(work / "esp.img", KERNEL, INITRD, ENTRIES, LOADER_CONF)
    data = work / "data.img"
    make_ext4(data)
    vars_path = fresh_vars(work / "VARS.fd")
    args = firmware_args(name, vars_path, port, "-s", f"4,virtio-blk,{esp}", "-s", f"6,virtio-blk,{data}",
                         "-s", f"7,virtio-net,tap={TAP},mac={MAC}")
    started = time.monotonic()
    g = Guest(args)
    state = {"guest": g, "name": name, "port": port, "work": work, "args": args, "vars": vars_path}
    try:
        choose_second_entry(g, port)
        g.wait_for("HYVE-CMD-READY", LINUX_TIMEOUT)
        print(f"Linux /init through OVMF and systemd-boot {time.monotonic() - started:.0f} s after hyve started")
        yield state
    finally:
        state["guest"].kill()
        ip("link", "del", TAP, check=False)


def test_vnc_keys_choose_the_systemd_boot_entry(linux_vm):
    cmdline = guest_ok(linux_vm["guest"], "cat /proc/cmdline")
    assert "hyve.entry=second" in cmdline and "hyve.entry=first" not in cmdline, cmdline


def test_linux_runs_on_uefi_with_efifb_and_acpi_from_fw_cfg(linux_vm):
    g, name, work = linux_vm["guest"], linux_vm["name"], linux_vm["work"]
    assert guest_ok(g, "cat /sys/firmware/efi/fw_platform_size").strip() == "64"
    listing = guest_ok(g, "ls /sys/firmware/efi").split()
    assert "efivars" in listing and "systab" in listing, listing
    # The console starts on the firmware's framebuffer (GOP), as efifb takes it over; Debian's
    # kernel then binds bochs-drm to the display (fbuf is Bochs-compatible), as on QEMU's stdvga.
    fb = guest_ok(g, "cat /proc/fb")
    assert "EFI VGA" in fb or "bochs-drm" in fb, fb
    assert "efifb" in guest_ok(g, "dmesg | grep -i efifb")
    w, h = map(int, guest_ok(g, "cat /sys/class/graphics/fb0/virtual_size").strip().split(","))
    assert "frame buffer" in guest_ok(g, "cat /sys/class/vtconsole/vtcon*/name")
    # Text on the Linux console is on the VNC screen: bright yellow on blue in the top row.
    text = "HYVE UEFI CONSOLE"
    guest_ok(g, "echo 0 > /sys/class/graphics/fbcon/cursor_blink; "
             f"printf '\\033[H\\033[2J\\033[?25l\\033[1;33;44m{text}\\033[0m' > /dev/tty1")

    def console_ok(img):
        cells = [[img.getpixel((c * 8 + x, y)) for y in range(16) for x in range(8)] for c in range(len(text))]
        return img.size == (w, h) and all(
            set(cell) <= {(0xFF, 0xFF, 0x55), (0x00, 0x00, 0xAA)} and
            ((0xFF, 0xFF, 0x55) in cell) == (ch != " ") for cell, ch in zip(cells, text))

    img = screenshot_until(name, work / "console.png", console_ok)
    assert console_ok(img), f"the console text is not on the screen (saved {work / 'console.png'})"

    # ACPI: the tables are hyve's (OEM ID HYVE), which the firmware can only have had through
    # fw_cfg's table loader; the guest enumerated the devices hyve's DSDT describes.
    oem = guest_ok(g, "dd if=/sys/firmware/acpi/tables/DSDT bs=1 skip=10 count=6 2>/dev/null")
    assert oem.startswith("HYVE"), oem
    hids = guest_ok(g, "cat /sys/bus/acpi/devices/*/hid").split()
    for hid in ("PNP0501", "PNP0303", "PNP0B00", "PNP0A03"):
        assert hid in hids, (hid, hids)
    assert guest_ok(g, "cat /sys/bus/pnp/devices/*/id").count("PNP0501") >= 1


def test_virtio_disk_and_net_after_firmware_boot(linux_vm):
    g = linux_vm["guest"]
    # vda is the ESP the firmware booted from, vdb the data disk.
    sizes = guest_ok(g, "cat /sys/block/vda/size /sys/block/vdb/size").split()
    assert int(sizes[1]) == (32 << 20) // 512, sizes
    guest_ok(g, "mount -t ext4 /dev/vdb /mnt && echo written-after-uefi > /mnt/f && sync && umount /mnt "
             "&& mount -t ext4 /dev/vdb /mnt && cat /mnt/f && umount /mnt")
    ifname = guest_ok(g, "ls /sys/class/net | grep -v '^lo$' | head -n1").strip()
    assert ifname, "no network interface in the guest"
    assert guest_ok(g, f"cat /sys/class/net/{ifname}/address").strip() == MAC
    guest_ok(g, f"ip link set {ifname} up && ip addr add {GUEST_IP}/24 dev {ifname}")
    out = guest_ok(g, f"ping -c 3 -W 5 {HOST_IP}", timeout=60)
    assert " 0% packet loss" in out, out
    # The host accepts and reads while the guest's nc runs: busybox nc ends when the host closes.
    received = []

    def accept_one(srv):
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(120)
            received.append(conn.recv(100))

    with socket.socket() as srv:
        srv.bind((HOST_IP, 0))
        srv.listen(1)
        srv.settimeout(120)
        host = threading.Thread(target=accept_one, args=(srv,), daemon=True)
        host.start()
        guest_ok(g, f"echo hello-over-virtio-net | nc {HOST_IP} {srv.getsockname()[1]}")
        host.join(180)
    assert received and received[0].startswith(b"hello-over-virtio-net"), received


def keys_reach_tty1(g, port, text, path):
    """Types text over VNC while a reader in the guest copies its console (tty1, the foreground
    VT) to path; returns None when the line arrived, else what the guest's input side shows."""
    # Keys typed before the reader has tty1 open need not reach it: wait until it has.
    guest_ok(g, f"cat /dev/tty1 > {path} & echo $! > {path}.pid; "
                "until ls -l /proc/$!/fd 2>/dev/null | grep -q /dev/tty1; do sleep 0.1; done")
    client = RfbClient(("127.0.0.1", port))
    try:
        type_text(client, text + "\n")
        deadline = time.monotonic() + SCREEN_TIMEOUT
        while text not in guest_ok(g, f"cat {path}"):
            if time.monotonic() > deadline:
                return guest_ok(g, f"cat {path}; grep -E 'i8042|CPU' /proc/interrupts; "
                                   "cat /sys/class/tty/tty0/active; dmesg | grep -iE 'i8042|atkbd|serio' | tail; "
                                   "grep -E 'Name|Handlers' /proc/bus/input/devices")
            time.sleep(0.5)
    finally:
        client.close()
        g.run(f"kill $(cat {path}.pid); rm -f {path} {path}.pid")
    return None


def test_snapshot_after_linux_booted_through_firmware(linux_vm):
    g, name, port, work = linux_vm["guest"], linux_vm["name"], linux_vm["port"], linux_vm["work"]
    problem = keys_reach_tty1(g, port, "typed before the snapshot", "/tmp/typed-before")
    assert problem is None, f"keys typed over VNC did not reach tty1 before the snapshot: {problem}"
    guest_ok(g, "echo 0 > /sys/class/graphics/fbcon/cursor_blink; "
             "printf '\\033[H\\033[2J\\033[?25lbefore the snapshot\\n' > /dev/tty1")
    time_lit = lambda img: sum(1 for y in range(16) for x in range(200) if img.getpixel((x, y)) != BLACK) > 50
    before = screenshot_until(name, work / "linux-before.png", time_lit)
    assert time_lit(before), "the console text did not reach the screen"
    before = screenshot(name, work / "linux-before.png")   # settled: the same picture twice
    assert screenshot(name, work / "linux-before2.png").tobytes() == before.tobytes()

    g = linux_vm["guest"] = snapshot_and_restore(g, name, work / "linux.snap")
    wait_listening(g, name, port)
    assert screenshot(name, work / "linux-after.png").tobytes() == before.tobytes()

    # The restored guest answers on COM1 and takes keys over VNC on its console.
    problem = keys_reach_tty1(g, port, "typed after the restore", "/tmp/typed-after")
    assert problem is None, f"keys typed over VNC did not reach tty1 after the restore: {problem}"


def test_efi_variable_survives_a_new_hyve_with_the_same_vars(linux_vm):
    g = linux_vm["guest"]
    efivars = "/sys/firmware/efi/efivars"
    guest_ok(g, f"grep -q efivarfs /proc/mounts || mount -t efivarfs efivarfs {efivars}")
    guest_ok(g, f"printf '\\007\\000\\000\\000{VAR_DATA}' > {efivars}/{VAR_NAME}")
    assert VAR_DATA in guest_ok(g, f"cat {efivars}/{VAR_NAME}")
    g.send("poweroff -f\n")
    assert g.wait_exit(300) == POWERED_OFF
    # In the VARS file on the host: the name (UCS-2) and the data.
    store = pathlib.Path(linux_vm["vars"]).read_bytes()
    assert "HyveTestVar".encode("utf-16-le") in store and VAR_DATA.encode() in store

    # A new hyve with the same VARS file: systemd-boot's menu again, Return over COM1 this time
    # (the firmware's console input includes the serial terminal), the first entry boots.
    g = linux_vm["guest"] = Guest(linux_vm["args"])
    g.wait_for(ENTRIES[1][1], LINUX_TIMEOUT)
    g.send("\r")
    g.wait_for("HYVE-CMD-READY", LINUX_TIMEOUT)
    assert "hyve.entry=first" in guest_ok(g, "cat /proc/cmdline")
    guest_ok(g, f"grep -q efivarfs /proc/mounts || mount -t efivarfs efivarfs {efivars}")
    assert VAR_DATA in guest_ok(g, f"cat {efivars}/{VAR_NAME}")
