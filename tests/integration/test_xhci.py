"""The xHCI controller with the USB tablet and keyboard: the stock xhci_pci driver binds
to it, usbhid enumerates both devices, the input layer shows an absolute tablet and a
keyboard, and nothing in the kernel log complains. Then input through the VNC server by a
real RFB client (build/vncinput), read back in the guest by evdump (hyve.test=input):
pointer positions map exactly onto ABS_X/ABS_Y at two screen sizes, buttons and both wheels
arrive, keys arrive with their exact evdev codes, and Caps Lock makes the guest send the
LED output report that the model then holds (read from a snapshot of the running VM)."""
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

import pytest

import snapshot_file
from conftest import HYVE, KERNEL, Guest, boot_args, run_hyve
from input_tools import (ABS_X, ABS_Y, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BTN_EXTRA, BTN_SIDE, EV_ABS, EV_KEY, EV_REL,
                         KEYS_105, KEYSYM_ONLY_SKIP, LED_CAPSL, LED_NUML, REL_HWHEEL, REL_WHEEL, VNCINPUT,
                         VncInput, led_write, sweep, wait_events)

HYVECTL = pathlib.Path(os.environ.get("HYVECTL_BIN", HYVE.parent / "hyvectl"))
RUNDIR = os.environ.get("HYVE_RUNDIR", "/run")
SLOT = 4
PORT = 5962
TABLET, KBD = "hyve_USB_tablet", "hyve_USB_keyboard"

# The keys a boot keyboard has a usage for: the 105 keys, Scroll Lock, mute and volume.
KEYS = KEYS_105 + [(0x46, 0xff14, 70), (0xa0, 0x1008ff12, 113), (0xae, 0x1008ff11, 114),
                   (0xb0, 0x1008ff13, 115)]
# F13-F24 (evdev 183-194) by keysym.
F13_F24 = [(0xffca + i, 183 + i) for i in range(12)]


def abs_value(pixel, size):
    """The input router's scaling: pixel centres, 0 -> 0 and size-1 -> 0x7FFF."""
    return (pixel * 0x7FFF + (size - 1) // 2) // (size - 1)


def usb_devices(g):
    """{busdev: (idVendor, idProduct, product)} of /sys/bus/usb/devices (hubs included)."""
    rc, out = g.run("for d in /sys/bus/usb/devices/*; do [ -f $d/idVendor ] && "
                    "echo \"$(basename $d) $(cat $d/idVendor) $(cat $d/idProduct) $(cat $d/product)\"; done")
    assert rc == 0, out
    found = {}
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4:
            found[parts[0]] = tuple(parts[1:])
    return found


def input_devices(g):
    """/proc/bus/input/devices as a list of {letter: [lines]} blocks."""
    rc, out = g.run("cat /proc/bus/input/devices")
    assert rc == 0, out
    blocks = []
    for chunk in out.strip().split("\n\n"):
        block = {}
        for line in chunk.splitlines():
            if len(line) > 3 and line[1] == ":":
                block.setdefault(line[0], []).append(line[3:])
        blocks.append(block)
    return blocks


def bits(block, name):
    for line in block.get("B", []):
        if line.startswith(name + "="):
            words = line.split("=", 1)[1].split()
            return int("".join(w.rjust(16, "0") for w in words), 16)
    return 0


@pytest.fixture(scope="module")
def rundir():
    os.makedirs(RUNDIR, exist_ok=True)
    d = pathlib.Path(tempfile.mkdtemp(prefix="xhci-", dir=RUNDIR))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_guest(rundir, port, w, h):
    """A guest with vesafb at w x h (no bochs DRM, so the VNC screen stays that size), the
    xHCI controller with both devices, and a control socket; waits for both event devices."""
    if not VNCINPUT.is_file():
        pytest.fail("needs build/vncinput (libvncserver-dev): scripts/install-deps", pytrace=False)
    sock = rundir / f"ctl-{port}.sock"
    g = Guest(boot_args("input", extra_cmdline="module_blacklist=bochs",
                        extra_args=["-s", f"3,fbuf,tcp=127.0.0.1:{port},w={w},h={h}",
                                    "-s", f"{SLOT},xhci,tablet,kbd", "-o", f"control.socket={sock}"]))
    g.sock = sock
    g.wait_for("HYVE-CMD-READY", timeout=300)
    g.wait_for(r"DEV event\d+ " + TABLET + r"\s", timeout=180)
    g.wait_for(r"DEV event\d+ " + KBD + r"\s", timeout=180)
    return g


@pytest.fixture(scope="module")
def guest(rundir):
    """One guest for most of the file (boots are slow in the test host)."""
    g, vnc = None, None
    try:
        g = start_guest(rundir, PORT, 1024, 768)
        vnc = VncInput(PORT)
        yield g, vnc
    finally:
        if vnc:
            vnc.close()
        if g:
            g.kill()


def test_enumeration(guest):
    g, _ = guest
    rc, out = g.run(f"cat /sys/bus/pci/devices/0000:00:0{SLOT}.0/vendor /sys/bus/pci/devices/0000:00:0{SLOT}.0/device "
                    f"/sys/bus/pci/devices/0000:00:0{SLOT}.0/class; "
                    f"basename $(readlink /sys/bus/pci/devices/0000:00:0{SLOT}.0/driver)")
    assert rc == 0 and out.split() == ["0x1b36", "0x000d", "0x0c0330", "xhci_hcd"], out
    devs = usb_devices(g)
    assert devs.get("1-1") == ("1209", "0001", "USB tablet"), devs
    assert devs.get("1-2") == ("1209", "0002", "USB keyboard"), devs
    # Two root hubs: USB 2.0 (1d6b:0002) and USB 3.0 (1d6b:0003), nothing on the USB 3 ports.
    assert devs.get("usb1", ())[:2] == ("1d6b", "0002") and devs.get("usb2", ())[:2] == ("1d6b", "0003"), devs
    assert len(devs) == 4, devs
    rc, out = g.run("cat /sys/bus/usb/devices/1-1/speed /sys/bus/usb/devices/1-1/bConfigurationValue "
                    "/sys/bus/usb/devices/1-1:1.0/bInterfaceSubClass /sys/bus/usb/devices/1-2:1.0/bInterfaceSubClass "
                    "/sys/bus/usb/devices/1-2:1.0/bInterfaceProtocol; ls /sys/bus/usb/drivers/usbhid/")
    assert rc == 0 and out.split()[:5] == ["480", "1", "00", "01", "01"], out
    assert "1-1:1.0" in out and "1-2:1.0" in out, out

    blocks = input_devices(g)
    tablet = [b for b in blocks if any("hyve USB tablet" in n for n in b.get("N", []))]
    kbd = [b for b in blocks if any("hyve USB keyboard" in n for n in b.get("N", []))]
    assert len(tablet) == 1 and len(kbd) == 1, blocks
    assert bits(tablet[0], "ABS") & 0x3 == 0x3, tablet          # ABS_X, ABS_Y
    rel_bits = bits(tablet[0], "REL")
    assert rel_bits >> REL_WHEEL & 1 and rel_bits >> REL_HWHEEL & 1, tablet
    key_bits = bits(tablet[0], "KEY")
    for btn in (BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA):
        assert key_bits >> btn & 1, (btn, tablet)
    kbd_keys = bits(kbd[0], "KEY")
    for code in (1, 30, 58, 87, 183, 194):  # ESC, A, CAPSLOCK, F11, F13, F24
        assert kbd_keys >> code & 1, (code, kbd)
    assert bits(kbd[0], "LED") & 0x7 == 0x7, kbd

    rc, out = g.run("dmesg")
    assert rc == 0
    bad = [l for l in out.splitlines() if re.search(r"xhci.*(error|fail|timeout|not responding|halt|dead)", l, re.I)
           or re.search(r"usb .*(device descriptor read|not accepting address|unable to enumerate|reset)", l, re.I)]
    assert not bad, "\n".join(bad)


def check_positions(g, vnc, w, h):
    for x, y in ((1, 1), (w - 1, h - 1), (w // 3, h // 2), (0, 0), (w // 2 + 7, h - 2)):
        start = len(g.output)
        vnc.send(f"ptr {x} {y} 0")
        want = (abs_value(x, w), abs_value(y, h))

        def at(ev):
            xs = [v for _, c, v in ev if c == ABS_X]
            ys = [v for _, c, v in ev if c == ABS_Y]
            return bool(xs) and bool(ys) and (xs[-1], ys[-1]) == want
        wait_events(g, TABLET, start, {EV_ABS}, at)


def test_pointer_positions(guest):
    g, vnc = guest
    check_positions(g, vnc, 1024, 768)


def test_pointer_positions_second_resolution(rundir):
    g, vnc = None, None
    try:
        g = start_guest(rundir, PORT + 1, 800, 600)
        vnc = VncInput(PORT + 1)
        check_positions(g, vnc, 800, 600)
    finally:
        if vnc:
            vnc.close()
        if g:
            g.kill()


def test_buttons_and_wheels(guest):
    g, vnc = guest
    vnc.send("ptr 300 300 0")
    # RFB's button mask has 8 bits: BTN_EXTRA (the router's fifth button) cannot come from VNC.
    for mask, btn in ((1, BTN_LEFT), (4, BTN_RIGHT), (2, BTN_MIDDLE), (128, BTN_SIDE)):
        start = len(g.output)
        vnc.send(f"ptr 300 300 {mask}", "ptr 300 300 0")
        got = wait_events(g, TABLET, start, {EV_KEY}, lambda ev: len(ev) >= 2)
        assert got == [(EV_KEY, btn, 1), (EV_KEY, btn, 0)], (mask, got)
    for mask, code, value in ((8, REL_WHEEL, 1), (16, REL_WHEEL, -1), (32, REL_HWHEEL, -1), (64, REL_HWHEEL, 1)):
        start = len(g.output)
        vnc.send(f"ptr 300 300 {mask}", "ptr 300 300 0")
        got = wait_events(g, TABLET, start, {EV_REL}, lambda ev: any(c == code for _, c, _ in ev))
        assert [(c, v) for _, c, v in got if c in (REL_WHEEL, REL_HWHEEL)] == [(code, value)], (mask, got)


def test_keys_by_extended_key_events(guest):
    g, vnc = guest
    sweep(g, vnc, KBD, KEYS, lambda k, down: f"xkey {k[0]:#x} {k[1]:#x} {down}", drop_repeats=True)


def test_keys_by_keysym(guest):
    g, vnc = guest
    keys = [k for k in KEYS if k[2] not in KEYSYM_ONLY_SKIP]
    sweep(g, vnc, KBD, keys + F13_F24, lambda k, down: f"key {k[-2]:#x} {down}", drop_repeats=True)


def model_leds(g, path):
    """The keyboard model's LED byte (HID order: Num 1, Caps 2, Scroll 4), from a snapshot."""
    r = subprocess.run([str(HYVECTL), f"--socket={g.sock}", "snapshot", str(path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    _, records = snapshot_file.read(path)
    rec = {r["name"]: r for r in records}
    leds = rec[f"dev.pci.0.{SLOT}.0"]["payload"]["port2"]["leds"]
    os.unlink(path)
    return leds


def wait_model_leds(g, rundir, want):
    deadline = time.monotonic() + 60
    while (leds := model_leds(g, rundir / "leds.snap")) != want and time.monotonic() < deadline:
        time.sleep(1)
    assert leds == want


def test_caps_lock_led(guest, rundir):
    """LEDs the guest sets reach the keyboard model as output reports (SET_REPORT), read from a
    snapshot of the running VM: Caps Lock on and off, Num Lock on and off, set through the
    guest's evdev node. (The console's own Caps Lock handling lit the LED only now and then in
    the nested test host, cause not found, so a key press is not relied on here.)"""
    g, vnc = guest
    for led, on, want in ((LED_CAPSL, True, 2), (LED_CAPSL, False, 0), (LED_NUML, True, 1), (LED_NUML, False, 0)):
        led_write(g, KBD, led, on)
        wait_model_leds(g, rundir, want)


def test_suspend_and_restore(guest, rundir):
    """Suspended and restored, the controller and both devices go on: pointer and keys still
    arrive in the restored guest, and its xhci driver saw nothing wrong."""
    g, vnc = guest
    path = rundir / "suspend.snap"
    r = subprocess.run([str(HYVECTL), f"--socket={g.sock}", f"--suspend={path}"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert g.wait_exit(120) == 1
    vnc.close()
    g2, vnc2 = Guest(["-r", path, "-l", "com1,stdio", "-o", f"control.socket={rundir / 'ctl-restored.sock'}",
                      "restored"]), None
    try:
        rc, out = g2.run("echo restored", timeout=300)   # the VM runs, so its VNC server listens
        assert rc == 0 and "restored" in out, out
        vnc2 = VncInput(PORT)
        check_positions(g2, vnc2, 1024, 768)
        sweep(g2, vnc2, KBD, KEYS[:8], lambda k, down: f"xkey {k[0]:#x} {k[1]:#x} {down}", drop_repeats=True)
        rc, out = g2.run("dmesg | grep -i -E 'xhci|usb [0-9]' | grep -i -E 'error|fail|timeout|dead|reset' || true")
        assert rc == 0 and out.strip() == "", out
    finally:
        if vnc2:
            vnc2.close()
        g2.kill()
        os.unlink(path)


def test_xhci_rejects_unknown_option():
    r = run_hyve(["-s", f"{SLOT},xhci,foo", "--kernel", KERNEL, "x"])
    assert r.returncode == 4
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "foo" in r.stderr
