"""UEFI guests as a user sees them: Debian's stock OVMF (OVMF_CODE_4M.fd with a per-VM copy of
OVMF_VARS_4M.fd) under hyve with the sandbox on, its screen over VNC and hyvectl screenshot.

- With no boot media the firmware starts its UEFI Shell: COM1 shows the prompt and the GOP
  framebuffer shows the Shell's banner in the firmware's text layout and colours, the same
  picture over VNC as through hyvectl screenshot.
- An EFI system partition built here (esp_image.py) holds Debian's systemd-boot, the stock kernel
  (an EFI stub) and the test initramfs: systemd-boot's menu waits (timeout menu-force) until
  keys sent over VNC choose the second entry, whose command line Linux then runs with.

Each OVMF boot costs minutes in the emulated test host, so the tests of one guest share it
(module fixtures, tests in file order); each test still checks only its own claim.
"""
import shutil
import subprocess
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


# ---- Linux through systemd-boot ----

TAP = "hyveuefi0"
HOST_IP, GUEST_IP = "10.78.0.1", "10.78.0.2"
MAC = "02:11:22:33:44:66"
LINUX_OPTIONS = "console=tty0 console=ttyS0 quiet hyve.test=cmd"
ENTRIES = [("hyve-a", "hyve first entry", f"{LINUX_OPTIONS} hyve.entry=first"),
           ("hyve-b", "hyve second entry", f"{LINUX_OPTIONS} hyve.entry=second")]
# The menu waits for a key however long it takes; the first entry is preselected.
LOADER_CONF = "timeout menu-force\ndefault hyve-a.conf\neditor no\n"


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
