"""The fbuf display: vesafb from boot_params.screen_info, the bochs DRM driver through
DISPI, the framebuffer as a KVM memory slot, and the picture as real VNC clients receive
it (libvncclient through build/vncgrab, gtk-vnc's gvnccapture), compared pixel for pixel."""
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from PIL import Image

from conftest import KERNEL, REPO, run_hyve

VNCGRAB = REPO / "build" / "vncgrab"
PAT_X, PAT_Y, BLOCK = 256, 600, 64
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255),
          (255, 255, 0), (0, 255, 255), (255, 0, 255), (128, 128, 128)]


def pattern_command(stride):
    """Shell for the guest: 64 rows with 8 blocks of 64x64 pixels at (PAT_X, PAT_Y) on /dev/fb0."""
    blocks = " ".join("'\\%03o\\%03o\\%03o\\000'" % (b, g, r) for r, g, b in COLORS)
    return ("cd /tmp && "
            f"for c in {blocks}; do i=0; while [ $i -lt {BLOCK} ]; do printf \"$c\"; i=$((i+1)); done; done > pat && "
            f"dd if=/dev/zero bs={PAT_X * 4} count=1 2>/dev/null > row && cat pat >> row && "
            f"dd if=/dev/zero bs={stride - PAT_X * 4 - len(COLORS) * BLOCK * 4} count=1 2>/dev/null >> row && "
            f"i=0; while [ $i -lt {BLOCK} ]; do cat row; i=$((i+1)); done > blk && "
            f"wc -c < blk && dd if=blk of=/dev/fb0 bs={stride} seek={PAT_Y} conv=notrunc 2>/dev/null && echo written")


def capture(port, path):
    """gvnccapture (gtk-vnc's client) writes PNG: exact pixels. (vncsnapshot cannot be used: it
    speaks only RFB 3.3, which neatvnc does not offer, and it writes only JPEG.)"""
    assert 5900 <= port < 6000
    r = subprocess.run(["gvnccapture", "--quiet", f"127.0.0.1:{port - 5900}", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return Image.open(path).convert("RGB")


def grab(target, path):
    """libvncclient, Raw encoding, written as PPM: exact pixels."""
    r = subprocess.run([str(VNCGRAB), target, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return Image.open(path).convert("RGB")


def grab_until(target, path, ok, timeout=30):
    """Grabs until ok(img) holds (the guest's writes may reach the framebuffer a little later:
    DRM's fbdev emulation flushes its shadow buffer from a worker); returns the last image."""
    deadline = time.monotonic() + timeout
    while True:
        img = grab(target, path)
        if ok(img) or time.monotonic() > deadline:
            return img
        time.sleep(0.5)


def region(img, x0, y0, x1, y1):
    return {img.getpixel((x, y)) for y in range(y0, y1) for x in range(x0, x1)}


def pattern_ok(img):
    return all(region(img, PAT_X + i * BLOCK, PAT_Y, PAT_X + (i + 1) * BLOCK, PAT_Y + BLOCK) == {c}
               for i, c in enumerate(COLORS))


def cleared_ok(img):
    return region(img, PAT_X, PAT_Y, PAT_X + len(COLORS) * BLOCK, PAT_Y + BLOCK) == {(0, 0, 0)}


def lit_pixels(img):
    return sum(1 for y in range(0, 64) for x in range(0, 400) if sum(img.getpixel((x, y))) > 300)


def fb_info(g):
    rc, out = g.run("cat /proc/fb /sys/class/graphics/fb0/virtual_size /sys/class/graphics/fb0/bits_per_pixel "
                    "/sys/class/graphics/fb0/stride")
    assert rc == 0, out
    lines = out.strip().splitlines()
    w, h = map(int, lines[-3].split(","))
    return lines[0], w, h, int(lines[-2]), int(lines[-1])


def check_display(g, port, workdir, w, h, stride):
    # fbcon draws text on the framebuffer.
    rc, out = g.run("printf 'HYVE FBCON TEXT\\n' > /dev/tty1")
    assert rc == 0, out
    img = grab_until(f"127.0.0.1:{port}", workdir / "console.ppm", lambda i: lit_pixels(i) > 100)
    assert img.size == (w, h)
    lit = lit_pixels(img)
    assert lit > 100, f"console area is blank ({lit} lit pixels)"

    # A known pattern written through /dev/fb0 arrives at the clients.
    rc, out = g.run(pattern_command(stride), timeout=120)
    assert rc == 0 and "written" in out and str(stride * BLOCK) in out, out
    exact = grab_until(f"127.0.0.1:{port}", workdir / "pattern.ppm", pattern_ok)
    for i, want in enumerate(COLORS):
        x0 = PAT_X + i * BLOCK
        got = {exact.getpixel((x, y)) for y in range(PAT_Y, PAT_Y + BLOCK) for x in range(x0, x0 + BLOCK)}
        assert got == {want}, (i, want, sorted(got)[:5])
    around = {exact.getpixel((x, y)) for y in range(PAT_Y, PAT_Y + BLOCK) for x in range(PAT_X - 32, PAT_X)}
    assert around == {(0, 0, 0)}, sorted(around)[:5]
    img = capture(port, workdir / "pattern.png")
    assert img.size == (w, h) and pattern_ok(img)

    # The screen follows later writes (dirty logging of the framebuffer slot).
    rc, out = g.run(f"dd if=/dev/zero of=/dev/fb0 bs={stride} seek={PAT_Y} count={BLOCK} conv=notrunc 2>/dev/null")
    assert rc == 0, out
    img = grab_until(f"127.0.0.1:{port}", workdir / "cleared.ppm", cleared_ok)
    assert cleared_ok(img)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="fbuf-")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def clients():
    if not shutil.which("gvnccapture") or not VNCGRAB.is_file():
        pytest.fail("needs gvnccapture (gvncviewer) and build/vncgrab (libvncserver-dev): scripts/install-deps",
                    pytrace=False)


def test_vesafb_from_screen_info(boot, workdir):
    """No display driver module: vesafb and fbcon use what boot_params.screen_info describes."""
    w, h, port = 1280, 720, 5977   # not the default, and rows straddle pages (stride 5120)
    g = boot("cmd", extra_cmdline="module_blacklist=bochs",
             extra_args=["-s", f"5,fbuf,tcp=127.0.0.1:{port},w={w},h={h}"])
    g.wait_for("HYVE-CMD-READY", timeout=240)
    rc, out = g.run("cat /sys/bus/pci/devices/0000:00:05.0/vendor /sys/bus/pci/devices/0000:00:05.0/device "
                    "/sys/bus/pci/devices/0000:00:05.0/class")
    assert rc == 0 and out.split() == ["0x1234", "0x1111", "0x030000"], out
    name, fw, fh, bpp, stride = fb_info(g)
    assert "VESA VGA" in name and (fw, fh, bpp, stride) == (w, h, 32, w * 4), (name, fw, fh, bpp, stride)
    check_display(g, port, workdir, w, h, stride)


def test_bochs_drm_through_dispi(boot, workdir):
    """The stock bochs DRM driver programs the DISPI registers; VNC follows its mode."""
    port = 5976
    g = boot("cmd", extra_args=["-s", f"5,fbuf,tcp=127.0.0.1:{port}"])
    g.wait_for("HYVE-CMD-READY", timeout=240)
    name, w, h, bpp, stride = fb_info(g)
    assert "bochs" in name and bpp == 32, name
    rc, out = g.run("ls /sys/bus/pci/devices/0000:00:05.0/driver/module/ -d && readlink "
                    "/sys/bus/pci/devices/0000:00:05.0/driver")
    assert rc == 0 and "bochs" in out, out
    check_display(g, port, workdir, w, h, stride)


@pytest.mark.parametrize("opts,msg", [
    ("tcp=5979,w=10", "w=10"),
    ("tcp=5979,h=abc", "h=abc"),
    ("tcp=70000", "tcp=70000"),
    ("unix=/nonexistent-dir/vnc.sock", "/nonexistent-dir/vnc.sock"),
])
def test_bad_options(opts, msg):
    r = run_hyve(["-s", f"5,fbuf,{opts}", "--kernel", KERNEL, "x"])
    assert r.returncode == 4, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], r.stderr


def test_port_in_use():
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 5978))
        s.listen()
        r = run_hyve(["-s", "5,fbuf,tcp=5978", "--kernel", KERNEL, "x"])
    assert r.returncode == 4, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "5978" in lines[0] and "in use" in lines[0], r.stderr

