"""noVNC (Debian's novnc, in headless Chromium, through websockify to hyve's UNIX VNC
listener with a password) shows the test pattern fbserve displays, pixel for pixel; with a
wrong password it shows nothing. Usage: novnc_test.py FBSERVE

Every wait is for something observable: Chromium is driven over the DevTools protocol and the
test waits until noVNC's page reports the state expected (connected with the pattern drawn in
its canvas, or disconnected after a security failure) and until the server logged the refusal.
GUARD only bounds a wait that never ends; it never decides a result."""
import base64
import ctypes
import fcntl
import io
import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from PIL import Image

PAT_X, PAT_Y, BLOCK = 256, 608, 64
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255),
          (255, 255, 0), (0, 255, 255), (255, 0, 255), (128, 128, 128)]
NOVNC = "/usr/share/novnc"
WIDTH, HEIGHT = 1200, 900
GUARD = 120
POLL = 0.05
CONNECTED_PREFIX = "Connected to"
DISCONNECTED = ("Disconnected", "Something went wrong, connection is closed")

# The page's state as JSON: vnc_lite.html's status line, where its canvas sits and how big
# it is drawn, and the colour at the middle of each pattern block in the canvas.
PAGE_STATE = """(() => {
    const canvas = document.querySelector('#screen canvas');
    const state = { status: document.getElementById('status').textContent, canvas: null, blocks: null };
    if (!canvas)
        return JSON.stringify(state);
    const r = canvas.getBoundingClientRect();
    state.canvas = { x: r.left, y: r.top, width: r.width, height: r.height, fb: [canvas.width, canvas.height] };
    if (canvas.width >= %d && canvas.height > %d) {
        const d = canvas.getContext('2d').getImageData(0, %d, canvas.width, 1).data;
        state.blocks = [];
        for (let i = 0; i < %d; i++) {
            const o = 4 * (%d + i * %d + %d);
            state.blocks.push([d[o], d[o + 1], d[o + 2]]);
        }
    }
    return JSON.stringify(state);
})()""" % (PAT_X + len(COLORS) * BLOCK, PAT_Y + BLOCK // 2, PAT_Y + BLOCK // 2, len(COLORS), PAT_X, BLOCK, BLOCK // 2)


def wait_for(what, condition, describe):
    """Polls condition() until it returns something true; fails naming what was awaited and
    describe() (the last state seen) if GUARD seconds pass first."""
    deadline = time.monotonic() + GUARD
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}: {describe()}")
        time.sleep(POLL)


def die_with_test():
    """Run in a child before exec: the kernel kills it if the test dies, even by SIGKILL
    (its own children go with it: Chromium's when the browser's channels close, websockify's
    when their connection does)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def exit_on_signals():
    """A test stopped by meson's timeout (SIGTERM), ^C or a hangup still runs its cleanup."""
    def stop(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)


def kill_group(proc, sig):
    """Signals proc's process group (it was started in a session of its own, so the group is
    proc and the children it spawned), then reaps proc."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait()


class Chromium:
    """Headless Chromium on a private home, driven over the DevTools protocol on
    --remote-debugging-pipe: it reads NUL-terminated JSON commands on fd 3 and writes
    NUL-terminated JSON replies and events on fd 4."""

    def __init__(self, workdir):
        # Chromium's profile, caches and dconf go to a private folder: the test host shares /
        # over 9p, where the memory maps they need fail; and no user's profile takes part.
        home = os.path.join(workdir, "chromium-home")
        os.makedirs(home, mode=0o700, exist_ok=True)
        env = dict(os.environ, HOME=home, XDG_RUNTIME_DIR=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home,
                   GSETTINGS_BACKEND="memory")
        cmd_read, cmd_write = os.pipe()
        out_read, out_write = os.pipe()
        # Out of the way of fds 3 and 4, so the child can move them there whatever their numbers.
        child_cmd = fcntl.fcntl(cmd_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(out_write, fcntl.F_DUPFD_CLOEXEC, 10)
        for fd in (cmd_read, out_write):
            os.close(fd)

        def to_fds_3_and_4():
            die_with_test()
            os.dup2(child_cmd, 3)
            os.dup2(child_out, 4)

        self.stderr = open(os.path.join(workdir, "chromium.log"), "w+")
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={home}/profile", "--force-device-scale-factor=1",
             f"--window-size={WIDTH},{HEIGHT}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr, env=env,
            preexec_fn=to_fds_3_and_4, close_fds=False, start_new_session=True)
        os.close(child_cmd)
        os.close(child_out)
        self.cmd, self.out = cmd_write, out_read
        self.buf = b""
        self.next_id = 0
        self.console = []
        self.events = set()
        self.session = None

    def log_tail(self):
        self.stderr.seek(0)
        return self.stderr.read()[-2000:]

    def send(self, method, params=None, session=True):
        """Sends a command (to the attached page unless session is False) and returns its result."""
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.cmd, data):]
        reply = self.receive(lambda m: m.get("id") == self.next_id, method)
        if "error" in reply:
            raise SystemExit(f"chromium: {method}: {reply['error']}")
        return reply["result"]

    def receive(self, wanted, what):
        """Reads messages until one satisfies wanted; keeps noVNC's console output on the way."""
        deadline = time.monotonic() + GUARD
        while True:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                msg = json.loads(raw)
                if msg.get("method") == "Runtime.consoleAPICalled":
                    p = msg["params"]
                    self.console.append(p["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                                    for a in p["args"]))
                if "method" in msg:
                    self.events.add((msg.get("sessionId"), msg["method"]))
                if wanted(msg):
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"chromium did not answer {what}: {self.log_tail()}")
            if select.select([self.out], [], [], left)[0]:
                chunk = os.read(self.out, 1 << 20)
                if not chunk:
                    raise SystemExit(f"chromium exited ({what}): {self.log_tail()}")
                self.buf += chunk

    def open_page(self, url):
        """A new tab, WIDTH x HEIGHT at scale 1, loading url; later commands go to it."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.target = target
        self.console = []
        self.send("Runtime.enable")
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        nav = self.send("Page.navigate", {"url": url})
        if nav.get("errorText"):
            raise SystemExit(f"chromium could not load {url}: {nav['errorText']}")
        self.wait_event("Page.loadEventFired")

    def wait_event(self, method):
        """Waits for an event of the attached page (it may have come in already)."""
        key = (self.session, method)
        if key not in self.events:
            self.receive(lambda m: (m.get("sessionId"), m.get("method")) == key, method)

    def close_page(self):
        """Closing the tab closes noVNC's connection with it."""
        self.send("Target.closeTarget", {"targetId": self.target}, session=False)
        self.session = None

    def page_state(self):
        r = self.send("Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True})
        if "exceptionDetails" in r:
            raise SystemExit(f"page state: {r['exceptionDetails']}")
        return json.loads(r["result"]["value"])

    def screenshot(self, out):
        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        with open(out, "wb") as f:
            f.write(data)
        return Image.open(io.BytesIO(data)).convert("RGB")

    def close(self):
        """Browser.close, then whatever of Chromium's process group is left is killed."""
        try:
            if self.proc.poll() is None:
                os.write(self.cmd, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
                self.proc.wait(GUARD)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            kill_group(self.proc, signal.SIGKILL)
            os.close(self.cmd)
            os.close(self.out)
            self.stderr.close()


def find_pattern(img):
    """The top-left corner of the pattern (the first red pixel row-wise) or None."""
    try:
        i = list(img.getdata()).index(COLORS[0])
    except ValueError:
        return None
    return i % img.size[0], i // img.size[0]


def check_pattern(img, origin):
    x0, y0 = origin
    px = img.load()
    for i, want in enumerate(COLORS):
        for dy in range(BLOCK):
            for dx in range(BLOCK):
                got = px[x0 + i * BLOCK + dx, y0 + dy]
                if got != want:
                    raise SystemExit(f"block {i} pixel ({dx},{dy}): {got}, want {want}")
    # The framebuffer's black around it: the canvas is shown 1:1.
    for dx in range(1, 9):
        if px[x0 - dx, y0] != (0, 0, 0):
            raise SystemExit(f"left of the pattern is {px[x0 - dx, y0]}, not black")


def check_right_password(browser, url, out):
    """noVNC connects, draws the pattern, and the page shows it exactly, unscaled, where the
    canvas puts the framebuffer's (PAT_X, PAT_Y)."""
    browser.open_page(url)
    state = {}

    def pattern_drawn():
        state.update(browser.page_state())
        if state["status"] in DISCONNECTED:
            raise SystemExit(f"noVNC with the right password was disconnected: {state}, console {browser.console}")
        return state["status"].startswith(CONNECTED_PREFIX) and state["blocks"] == [list(c) for c in COLORS]

    wait_for("noVNC to connect and draw the pattern", pattern_drawn,
             lambda: f"page {state}, console {browser.console}")
    img = browser.screenshot(out)
    origin = find_pattern(img)
    if origin is None:
        raise SystemExit(f"noVNC drew the pattern in its canvas, but the page does not show it ({state})")
    check_pattern(img, origin)
    canvas = state["canvas"]
    if (canvas["width"], canvas["height"]) != tuple(canvas["fb"]):
        raise SystemExit(f"the canvas is scaled: {canvas}")
    # Chromium paints a canvas laid out at a half pixel on the next whole one.
    expected = (math.floor(canvas["x"] + 0.5) + PAT_X, math.floor(canvas["y"] + 0.5) + PAT_Y)
    if origin != expected:
        raise SystemExit(f"the pattern is at {origin} in the page, the canvas puts it at {expected}: {canvas}")
    print(f"pattern at {origin} in the page (framebuffer {PAT_X},{PAT_Y}, status {state['status']!r})")
    browser.close_page()


def check_wrong_password(browser, url, out, refusal_logged):
    """noVNC gives the password, the server refuses it, noVNC reports the security failure
    and disconnects; the page shows no picture."""
    browser.open_page(url)
    state = {}

    def disconnected():
        state.update(browser.page_state())
        if state["status"].startswith(CONNECTED_PREFIX):
            raise SystemExit(f"noVNC connected with a wrong password: {state}")
        return state["status"] in DISCONNECTED

    wait_for("noVNC to disconnect", disconnected, lambda: f"page {state}, console {browser.console}")
    wait_for("the server to log noVNC's wrong password", refusal_logged,
             lambda: f"nothing logged (page {state}, console {browser.console})")
    if not any("Security negotiation failed" in line for line in browser.console):
        raise SystemExit(f"noVNC disconnected without a security failure: {browser.console}")
    if state["blocks"] is not None and any(b != [0, 0, 0] for b in state["blocks"]):
        raise SystemExit(f"noVNC drew something with a wrong password: {state}")
    if find_pattern(browser.screenshot(out)) is not None:
        raise SystemExit("noVNC with a wrong password shows the picture")
    browser.close_page()


def check_novnc(sock, password, workdir, refusal_logged):
    """Through websockify to the VNC UNIX socket: noVNC with the right password shows the
    pattern exactly; with a wrong one it shows nothing and the server logged the refusal."""
    # websockify gets a socket already listening (--inetd), so the page can be loaded at once.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    ws = subprocess.Popen(["websockify", "--inetd", "--web", NOVNC, f"--unix-target={sock}"],
                          stdin=listener.fileno(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True, preexec_fn=die_with_test)
    listener.close()
    browser = None
    try:
        browser = Chromium(workdir)
        page = f"http://127.0.0.1:{port}/vnc_lite.html?host=127.0.0.1&port={port}&password="
        check_right_password(browser, page + password, os.path.join(workdir, "good.png"))
        check_wrong_password(browser, page + "wrong-pw", os.path.join(workdir, "bad.png"), refusal_logged)
        print("noVNC: right password shows the pattern exactly, wrong password shows nothing")
    finally:
        if browser:
            browser.close()
        # websockify serves each connection in a child process of its own: all go.
        kill_group(ws, signal.SIGKILL)


def check_tools():
    for tool in ("chromium", "websockify"):
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool} (scripts/install-deps)")
    if not os.path.isfile(f"{NOVNC}/vnc_lite.html"):
        raise SystemExit("needs novnc (scripts/install-deps)")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    check_tools()
    exit_on_signals()
    start = time.monotonic()
    d = tempfile.mkdtemp(prefix="novnc-")
    sock = os.path.join(d, "vnc.sock")
    log = open(os.path.join(d, "fbserve.log"), "w+")
    server = subprocess.Popen([sys.argv[1], f"unix={sock}", "password=hyve-pw"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        if server.stdout.readline().strip() != "READY":
            raise SystemExit("fbserve did not start")
        check_novnc(sock, "hyve-pw", d, lambda: "wrong password" in open(log.name).read())
        print(f"took {time.monotonic() - start:.1f} s")
    finally:
        server.stdin.close()
        server.wait(30)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
