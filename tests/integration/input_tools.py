"""What the input tests share: evdev constants, the key table of a 105-key keyboard as
(QEMU key number, X keysym, evdev code), a driver for build/vncinput (a libvncclient
client taking commands on stdin), and readers for the guest's evdump lines."""
import socket
import subprocess
import time

from conftest import REPO

VNCINPUT = REPO / "build" / "vncinput"
EV_KEY, EV_REL, EV_ABS, EV_LED = 1, 2, 3, 17
ABS_X, ABS_Y = 0, 1
REL_X, REL_Y, REL_HWHEEL, REL_WHEEL = 0, 1, 6, 8
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA = 272, 273, 274, 275, 276
LED_NUML, LED_CAPSL = 0, 1

LETTERS = "qwertyuiopasdfghjklzxcvbnm"
LETTER_QNUM = [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1e, 0x1f, 0x20,
               0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32]
KEYS_105 = ([(q, ord(c), q) for q, c in zip(LETTER_QNUM, LETTERS)]
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
               (0x56, 0x3c, 86)])                                            # the rest of the 105 keys
# '<' on a US layout is Shift+comma: the 102nd key only has a keycode through extended events.
KEYSYM_ONLY_SKIP = {86}


class VncInput:
    """build/vncinput connected to 127.0.0.1:port; send() waits for its "ok" per command."""

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


def sweep(g, vnc, dev, keys, make_line, drop_repeats=False):
    """Presses and releases each key (the evdev code is the key tuple's last item), in chunks
    of 8 (a keyboard's buffer is finite); device `dev` must report exactly that, in order.
    drop_repeats: ignore value 2, the guest input core's own autorepeat (a slow guest may see
    a key held past its delay): not something the device sent."""
    def presses(ev):
        return [e for e in ev if e[2] != 2] if drop_repeats else ev

    for i in range(0, len(keys), 8):
        chunk = keys[i:i + 8]
        start = len(g.output)
        lines = []
        for key in chunk:
            lines += [make_line(key, 1), make_line(key, 0)]
        vnc.send(*lines)
        want = [(EV_KEY, k[-1], v) for k in chunk for v in (1, 0)]
        got = presses(wait_events(g, dev, start, {EV_KEY}, lambda ev: len(presses(ev)) >= len(want)))
        assert got == want, [k[-1] for k in chunk]


def led_write(g, dev, led, on):
    """Sets a keyboard LED from inside the guest through the evdev node of device `dev`
    (EV_LED, then EV_SYN); the guest's driver passes it on to the keyboard."""
    node = g.wait_for(r"DEV (event\d+) " + dev + r"\s").group(1)
    data = b"".join(bytes(16) + t.to_bytes(2, "little") + c.to_bytes(2, "little") + v.to_bytes(4, "little")
                    for t, c, v in ((EV_LED, led, int(on)), (0, 0, 0)))
    rc, out = g.run("printf '" + "".join("\\%03o" % b for b in data) + f"' > /dev/input/{node}")
    assert rc == 0, out
