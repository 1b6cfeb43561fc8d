"""noVNC (Debian's novnc, in headless Chromium, through websockify to hyve's UNIX VNC
listener with a password) shows the test pattern fbserve displays, pixel for pixel; with a
wrong password it shows nothing. Usage: novnc_test.py FBSERVE"""
import os
import shutil
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"websockify exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("websockify did not start listening")


def screenshot(port, password, out):
    """vnc_lite.html connects on load (not scaled); Chromium takes the picture after 8 s of page time."""
    url = (f"http://127.0.0.1:{port}/vnc_lite.html?host=127.0.0.1&port={port}"
           f"&password={password}")
    # Chromium's profile, caches and dconf go to a private folder beside the picture: the
    # test host shares / over 9p, where the memory maps they need fail.
    home = os.path.join(os.path.dirname(out), "chromium-home")
    os.makedirs(home, mode=0o700, exist_ok=True)
    env = dict(os.environ, HOME=home, XDG_RUNTIME_DIR=home, XDG_CONFIG_HOME=home, XDG_CACHE_HOME=home,
               GSETTINGS_BACKEND="memory")
    r = subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={home}/profile", "--force-device-scale-factor=1", "--window-size=1200,900",
                        "--virtual-time-budget=8000", f"--screenshot={out}", url],
                       capture_output=True, text=True, timeout=240, env=env)
    if not os.path.exists(out):
        raise SystemExit(f"chromium took no screenshot: {r.stderr[-2000:]}")
    return Image.open(out).convert("RGB")


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


def check_novnc(sock, password, workdir, refusal_logged):
    """Through websockify to the VNC UNIX socket: noVNC with the right password shows the
    pattern exactly; with a wrong one it shows nothing and the server logged the refusal."""
    port = free_port()
    ws = subprocess.Popen(["websockify", "--web", NOVNC, f"--unix-target={sock}", f"127.0.0.1:{port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, ws)
        # Page time runs ahead of the network on a loaded machine: a picture taken before
        # noVNC got its first update is taken again.
        for attempt in range(5):
            img = screenshot(port, password, os.path.join(workdir, "good.png"))
            origin = find_pattern(img)
            if origin is not None:
                break
        if origin is None:
            raise SystemExit("noVNC with the right password does not show the pattern")
        check_pattern(img, origin)
        # The canvas starts where the page puts it; the pattern sits at (PAT_X, PAT_Y) inside it.
        print(f"pattern at {origin} in the page (framebuffer {PAT_X},{PAT_Y})")
        bad = screenshot(port, "wrong-pw", os.path.join(workdir, "bad.png"))
        if find_pattern(bad) is not None:
            raise SystemExit("noVNC with a wrong password shows the picture")
        deadline = time.monotonic() + 30
        while not refusal_logged():
            if time.monotonic() > deadline:
                raise SystemExit("the server never saw noVNC's wrong password (did noVNC connect at all?)")
            time.sleep(0.2)
        print("noVNC: right password shows the pattern exactly, wrong password shows nothing")
    finally:
        ws.terminate()
        ws.wait()


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
    d = tempfile.mkdtemp(prefix="novnc-")
    sock = os.path.join(d, "vnc.sock")
    log = open(os.path.join(d, "fbserve.log"), "w+")
    server = subprocess.Popen([sys.argv[1], f"unix={sock}", "password=hyve-pw"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        if server.stdout.readline().strip() != "READY":
            raise SystemExit("fbserve did not start")
        check_novnc(sock, "hyve-pw", d, lambda: "wrong password" in open(log.name).read())
    finally:
        server.stdin.close()
        server.wait(30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
