"""PS/2 keyboard and mouse behind the i8042, driven through the VNC server by a real
RFB client (libvncclient, build/vncinput) and read back in the guest from
/dev/input/event* by evdump (hyve.test=input): the stock atkbd and psmouse drivers
must report exactly the evdev codes that were typed, in order."""
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

import snapshot_file
from conftest import HYVE, REPO, Guest, boot_args

VNCINPUT = REPO / "build" / "vncinput"
HYVECTL = pathlib.Path(os.environ.get("HYVECTL_BIN", HYVE.parent / "hyvectl"))
RUNDIR = os.environ.get("HYVE_RUNDIR", "/run")
PORT = 5961
EV_KEY, EV_REL, EV_LED = 1, 2, 17
REL_X, REL_Y, REL_HWHEEL, REL_WHEEL = 0, 1, 6, 8
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE = 272, 273, 274, 275
LED_NUML, LED_CAPSL = 0, 1

# (QEMU key number, X keysym, evdev code) for the sweep.
LETTERS = "qwertyuiopasdfghjklzxcvbnm"
LETTER_QNUM = [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1e, 0x1f, 0x20,
               0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32]
KEYS = ([(q, ord(c), q) for q, c in zip(LETTER_QNUM, LETTERS)]
        + [(0x02 + i, ord("1234567890"[i]), 2 + i) for i in range(10)]
        + [(0x3b + i, 0xffbe + i, 59 + i) for i in range(10)]       # F1-F10
        + [(0x57, 0xffc8, 87), (0x58, 0xffc9, 88)]                    # F11, F12
        + [(0x2a, 0xffe1, 42), (0x36, 0xffe2, 54), (0x1d, 0xffe3, 29), (0x9d, 0xffe4, 97),
           (0x38, 0xffe9, 56), (0xb8, 0xffea, 100), (0xdb, 0xffeb, 125), (0xdc, 0xffec, 126),
           (0xdd, 0xff67, 127)]                                          # modifiers, Meta, Menu
        + [(0xc8, 0xff52, 103), (0xd0, 0xff54, 108), (0xcb, 0xff51, 105), (0xcd, 0xff53, 106),
           (0xc7, 0xff50, 102), (0xcf, 0xff57, 107), (0xc9, 0xff55, 104), (0xd1, 0xff56, 109),
           (0xd2, 0xff63, 110), (0xd3, 0xffff, 111)]                    # arrows, editing
        + [(0xc6, 0xff13, 119), (0xb7, 0xff61, 99)]                     # Pause, PrintScreen
        + [(0x52, 0xffb0, 82), (0x4f, 0xffb1, 79), (0x50, 0xffb2, 80), (0x51, 0xffb3, 81),
           (0x4b, 0xffb4, 75), (0x4c, 0xffb5, 76), (0x4d, 0xffb6, 77), (0x47, 0xffb7, 71),
           (0x48, 0xffb8, 72), (0x49, 0xffb9, 73), (0x9c, 0xff8d, 96), (0xb5, 0xffaf, 98),
           (0x37, 0xffaa, 55), (0x4a, 0xffad, 74), (0x4e, 0xffab, 78), (0x53, 0xffae, 83)]  # keypad
        + [(0x01, 0xff1b, 1), (0x0f, 0xff09, 15), (0x1c, 0xff0d, 28), (0x0e, 0xff08, 14),
           (0x39, 0x20, 57), (0x0c, ord("-"), 12), (0x0d, ord("="), 13), (0x1a, ord("["), 26),
           (0x1b, ord("]"), 27), (0x2b, ord("\\"), 43), (0x27, ord(";"), 39), (0x28, ord("'"), 40),
           (0x29, ord("`"), 41), (0x33, ord(","), 51), (0x34, ord("."), 52), (0x35, ord("/"), 53),
           (0x56, 0x3c, 86)]                                             # the rest of the 105 keys
        + [(0xa0, 0x1008ff12, 113), (0xae, 0x1008ff11, 114), (0xb0, 0x1008ff13, 115),
           (0xa2, 0x1008ff14, 164), (0x99, 0x1008ff17, 163), (0x90, 0x1008ff16, 165),
           (0xa4, 0x1008ff15, 166), (0xb2, 0x1008ff18, 172)])            # multimedia
# '<' on a US layout is Shift+comma: the 102nd key only has a keycode through extended events.
KEYSYM_ONLY_SKIP = {86}


class VncInput:
    def __init__(self, port, timeout=120):
        # A restored VM listens again only once it has read the snapshot: wait for the port.
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.proc = subprocess.Popen([str(VNCINPUT), f"127.0.0.1:{port}"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def send(self, *lines):
        for line in lines:
            self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        for line in lines:
            answer = self.proc.stdout.readline().strip()
            assert answer == "ok", (line, answer, self.proc.stderr.read() if answer == "" else "")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def events(g, dev, start, types):
    """(type, code, value) of the EV lines of device `dev` after offset start."""
    out = []
    for line in g.text()[start:].splitlines():
        f = line.strip().split()
        if len(f) == 5 and f[0] == "EV" and f[1] == dev and int(f[2]) in types:
            out.append((int(f[2]), int(f[3]), int(f[4])))
    return out


def wait_events(g, dev, start, types, pred, timeout=120):
    """Waits until pred(events) holds; returns the events."""
    deadline = time.monotonic() + timeout
    while True:
        ev = events(g, dev, start, types)
        if pred(ev):
            return ev
        if time.monotonic() > deadline:
            raise AssertionError(f"events of {dev} so far: {ev}\nserial tail:\n{g.text_tail()}")
        time.sleep(0.2)


def device_name(g, prefix, timeout=180):
    m = g.wait_for(r"DEV event\d+ (" + prefix + r"\S*)", timeout=timeout)
    return m.group(1)


@pytest.fixture(scope="module")
def rundir():
    os.makedirs(RUNDIR, exist_ok=True)
    d = pathlib.Path(tempfile.mkdtemp(prefix="ps2-", dir=RUNDIR))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def guest(rundir):
    """One guest for the whole file (boots are slow in the test host)."""
    if not VNCINPUT.is_file():
        pytest.fail("needs build/vncinput (libvncserver-dev): scripts/install-deps", pytrace=False)
    sock = rundir / "ctl.sock"
    g = Guest(boot_args("input", extra_args=["-s", f"3,fbuf,tcp=127.0.0.1:{PORT}",
                                              "-o", f"control.socket={sock}"]))
    vnc = None
    try:
        g.wait_for("HYVE-CMD-READY", timeout=300)
        g.kbd = device_name(g, "AT_Translated_Set_2_keyboard")
        g.sock = sock
        vnc = VncInput(PORT)
        yield g, vnc
    finally:
        if vnc:
            vnc.close()
        g.kill()


def sweep(g, vnc, keys, make_line):
    """Presses and releases each key; the keyboard device must report exactly that, in order."""
    for i in range(0, len(keys), 8):   # in chunks: the keyboard's buffer is finite
        chunk = keys[i:i + 8]
        start = len(g.output)
        lines = []
        for key in chunk:
            lines += [make_line(key, 1), make_line(key, 0)]
        vnc.send(*lines)
        want = [(EV_KEY, k[2], v) for k in chunk for v in (1, 0)]
        got = wait_events(g, g.kbd, start, {EV_KEY}, lambda ev: len(ev) >= len(want))
        assert got == want, [k[2] for k in chunk]


def test_keys_by_extended_key_events(guest):
    g, vnc = guest
    sweep(g, vnc, KEYS, lambda k, down: f"xkey {k[0]:#x} {k[1]:#x} {down}")


def test_keys_by_keysym(guest):
    g, vnc = guest
    keys = [k for k in KEYS if k[2] not in KEYSYM_ONLY_SKIP]
    sweep(g, vnc, keys, lambda k, down: f"key {k[1]:#x} {down}")
    # Shifted characters map to their key; the client sends Shift itself.
    start = len(g.output)
    vnc.send("key 0xffe1 1", "key 0x41 1", "key 0x41 0", "key 0x21 1", "key 0x21 0", "key 0xffe1 0")
    want = [(EV_KEY, 42, 1), (EV_KEY, 30, 1), (EV_KEY, 30, 0), (EV_KEY, 2, 1), (EV_KEY, 2, 0), (EV_KEY, 42, 0)]
    assert wait_events(g, g.kbd, start, {EV_KEY}, lambda ev: len(ev) >= 6) == want


def model_leds(g, path):
    r = subprocess.run([str(HYVECTL), f"--socket={g.sock}", "snapshot", str(path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    _, records = snapshot_file.read(path)
    rec = {r["name"]: r for r in records}
    leds = rec["dev.lpc.i8042"]["payload"]["kbd"]["leds"]
    os.unlink(path)
    return leds


def led_write(g, led, on):
    """Sets a keyboard LED from inside the guest through its evdev node (EV_LED, then EV_SYN):
    atkbd sends the keyboard an ED command with the new LED byte."""
    node = g.wait_for(r"DEV (event\d+) " + g.kbd + r"\s").group(1)
    data = b"".join(bytes(16) + t.to_bytes(2, "little") + c.to_bytes(2, "little") + v.to_bytes(4, "little")
                    for t, c, v in ((EV_LED, led, int(on)), (0, 0, 0)))
    rc, out = g.run("printf '" + "".join("\\%03o" % b for b in data) + f"' > /dev/input/{node}")
    assert rc == 0, out


def test_caps_lock_led(guest, rundir):
    """LEDs the guest sets reach the keyboard model (read from a snapshot of the running VM,
    which also exercises the i8042's save): Caps Lock on and off, Num Lock on and off. They
    are set through the guest's evdev node: the console's own Caps Lock handling lit the LED
    only now and then in the nested test host (cause not found), so a key press is not
    relied on here."""
    g, vnc = guest
    for led, on, want in ((LED_CAPSL, True, 4), (LED_CAPSL, False, 0), (LED_NUML, True, 2), (LED_NUML, False, 0)):
        led_write(g, led, on)
        deadline = time.monotonic() + 60
        while (leds := model_leds(g, rundir / "leds.snap")) != want and time.monotonic() < deadline:
            time.sleep(1)
        assert leds == want, (led, on)


def test_mouse(guest):
    g, vnc = guest
    rc, out = g.run("cat /proc/bus/input/devices")
    assert rc == 0 and "ImExPS/2" in out, out
    mouse = device_name(g, "ImExPS/2")

    def rel(start, code):
        return sum(v for t, c, v in events(g, mouse, start, {EV_REL}) if c == code)

    vnc.send("ptr 100 100 0")   # the first position moves nothing
    prev = (100, 100)
    for x, y in ((150, 130), (450, 140), (100, 450)):   # the last two need several packets each
        start = len(g.output)
        vnc.send(f"ptr {x} {y} 0")
        want = (x - prev[0], y - prev[1])
        wait_events(g, mouse, start, {EV_REL}, lambda ev: (rel(start, REL_X), rel(start, REL_Y)) == want)
        prev = (x, y)

    for mask, btn in ((1, BTN_LEFT), (4, BTN_RIGHT), (2, BTN_MIDDLE), (128, BTN_SIDE)):
        start = len(g.output)
        vnc.send(f"ptr 100 450 {mask}", "ptr 100 450 0")
        assert wait_events(g, mouse, start, {EV_KEY}, lambda ev: len(ev) >= 2) == [(EV_KEY, btn, 1), (EV_KEY, btn, 0)]

    for mask, code, value in ((8, REL_WHEEL, 1), (16, REL_WHEEL, -1), (32, REL_HWHEEL, -1), (64, REL_HWHEEL, 1)):
        start = len(g.output)
        vnc.send(f"ptr 100 450 {mask}", "ptr 100 450 0")
        got = wait_events(g, mouse, start, {EV_REL}, lambda ev: any(c == code for _, c, _ in ev))
        assert [(c, v) for _, c, v in got if c in (REL_WHEEL, REL_HWHEEL)] == [(code, value)]


def test_keyboard_and_mouse_after_restore(guest, rundir):
    """Suspended and restored (last: it ends the module's guest), the controller, keyboard and
    mouse carry on where they were: keys and motion still reach the same guest drivers."""
    g, vnc = guest
    mouse = device_name(g, "ImExPS/2")
    vnc.close()
    path = rundir / "suspend.snap"
    r = subprocess.run([str(HYVECTL), f"--socket={g.sock}", f"--suspend={path}"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert g.wait_exit(120) == 1
    g2 = Guest(["-r", str(path), "-l", "com1,stdio", "-o", f"control.socket={g.sock}", "ps2-restored"])
    vnc2 = None
    try:
        vnc2 = VncInput(PORT)
        vnc2.send("xkey 0x1e 0x61 1", "xkey 0x1e 0x61 0", "ptr 10 10 0", "ptr 30 20 2", "ptr 30 20 0")
        assert wait_events(g2, g.kbd, 0, {EV_KEY}, lambda ev: len(ev) >= 2) == [(EV_KEY, 30, 1), (EV_KEY, 30, 0)]
        got = wait_events(g2, mouse, 0, {EV_KEY, EV_REL}, lambda ev: (EV_KEY, BTN_MIDDLE, 0) in ev)
        assert [e for e in got if e[0] == EV_KEY] == [(EV_KEY, BTN_MIDDLE, 1), (EV_KEY, BTN_MIDDLE, 0)]
        assert sum(v for t, c, v in got if t == EV_REL and c == REL_X) == 20
        assert sum(v for t, c, v in got if t == EV_REL and c == REL_Y) == 10
    finally:
        if vnc2:
            vnc2.close()
        g2.kill()
