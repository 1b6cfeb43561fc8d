"""The fbuf display: vesafb from boot_params.screen_info, the bochs DRM driver through
DISPI, the framebuffer as a KVM memory slot, and the picture as independent VNC clients
receive it (libvncclient through build/vncgrab with Raw and ZRLE, gtk-vnc's gvnccapture,
vncsnapshot, and tests/integration/rfb_client.py), compared pixel for pixel; screenshots
through hyvectl; two clients, the UNIX listener, passwords, `wait`, snapshots."""
import json
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
from PIL import Image

from conftest import KERNEL, REPO, RUNDIR, Guest, boot_args, hyvectl, run_hyve, sock
from rfb_client import AuthFailed, RfbClient, connect_after_backoff

VNCGRAB = REPO / "build" / "vncgrab"
# Block edges on multiples of 16 pixels: vncsnapshot writes JPEG, whose 16x16 blocks then
# each hold one colour and come back exact up to colour-conversion rounding.
PAT_X, PAT_Y, BLOCK = 256, 608, 64
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255),
          (255, 255, 0), (0, 255, 255), (255, 0, 255), (128, 128, 128)]


def status(name):
    import json
    r = hyvectl(name, "--json", "status")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def pattern_command(stride):
    """Shell for the guest: 64 rows with 8 blocks of 64x64 pixels at (PAT_X, PAT_Y) on /dev/fb0,
    drawn through mmap (tests/tools/fbwrite.c)."""
    blocks = " ".join("'\\%03o\\%03o\\%03o\\000'" % (b, g, r) for r, g, b in COLORS)
    return ("cd /tmp && "
            f"for c in {blocks}; do i=0; while [ $i -lt {BLOCK} ]; do printf \"$c\"; i=$((i+1)); done; done > pat && "
            f"dd if=/dev/zero bs={PAT_X * 4} count=1 2>/dev/null > row && cat pat >> row && "
            f"dd if=/dev/zero bs={stride - PAT_X * 4 - len(COLORS) * BLOCK * 4} count=1 2>/dev/null >> row && "
            f"i=0; while [ $i -lt {BLOCK} ]; do cat row; i=$((i+1)); done > blk && "
            f"fbwrite {PAT_Y * stride} < blk && echo written")


def capture(port, path):
    """gvnccapture (gtk-vnc's client) writes PNG: exact pixels."""
    assert 5900 <= port < 6000
    r = subprocess.run(["gvnccapture", "--quiet", f"127.0.0.1:{port - 5900}", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return Image.open(path).convert("RGB")


def snapshot_jpeg(port, path):
    """vncsnapshot (TightVNC 1.2.8's client, RFB 3.3) writes JPEG only."""
    r = subprocess.run(["vncsnapshot", "-quiet", "-quality", "100", f"127.0.0.1:{port - 5900}", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return Image.open(path).convert("RGB")


def grab(target, path, *opts):
    """libvncclient (Raw unless -e says otherwise), written as PPM: exact pixels."""
    r = subprocess.run([str(VNCGRAB), *opts, target, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return Image.open(path).convert("RGB")


def grab_until(target, path, ok, *opts, timeout=60):
    """Grabs until ok(img) holds (the guest's writes may reach the framebuffer a little later:
    DRM's fbdev emulation flushes its shadow buffer from a worker); returns the last image."""
    deadline = time.monotonic() + timeout
    while True:
        img = grab(target, path, *opts)
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


def near(img, box, want, tol=3):
    """Every pixel of box within tol of want per channel (JPEG's colour conversion rounds)."""
    x0, y0, x1, y1 = box
    return all(abs(c - w) <= tol for y in range(y0, y1) for x in range(x0, x1)
               for c, w in zip(img.getpixel((x, y)), want))


def client_pattern_ok(c):
    return all(c.pixel(PAT_X + i * BLOCK + dx, PAT_Y + dy) == col
               for i, col in enumerate(COLORS) for dx, dy in ((0, 0), (BLOCK - 1, BLOCK - 1), (7, 33)))


def check_pattern(g, port, workdir, w, h, stride, vmname):
    """The pattern through /dev/fb0, as every kind of client and hyvectl screenshot see it."""
    target = f"127.0.0.1:{port}"
    rc, out = g.run(pattern_command(stride), timeout=120)
    assert rc == 0 and "written" in out and str(stride * BLOCK) in out, out
    exact = grab_until(target, workdir / "pattern.ppm", pattern_ok)
    assert exact.size == (w, h)
    for i, want in enumerate(COLORS):
        x0 = PAT_X + i * BLOCK
        got = {exact.getpixel((x, y)) for y in range(PAT_Y, PAT_Y + BLOCK) for x in range(x0, x0 + BLOCK)}
        assert got == {want}, (i, want, sorted(got)[:5])
    around = {exact.getpixel((x, y)) for y in range(PAT_Y, PAT_Y + BLOCK) for x in range(PAT_X - 32, PAT_X)}
    assert around == {(0, 0, 0)}, sorted(around)[:5]
    # The same picture through ZRLE, gtk-vnc, and hyve's own PNG writer.
    for enc in ("zrle", "tight"):
        assert grab(target, workdir / f"{enc}.ppm", "-e", enc).tobytes() == exact.tobytes(), enc
    assert capture(port, workdir / "pattern.png").tobytes() == exact.tobytes()
    shot = workdir / "shot.png"
    r = hyvectl(vmname, "screenshot", shot)
    assert r.returncode == 0, r.stderr
    assert Image.open(shot).convert("RGB").tobytes() == exact.tobytes()
    # vncsnapshot: JPEG, so equal within rounding, block by block.
    jpeg = snapshot_jpeg(port, workdir / "snap.jpg")
    assert jpeg.size == (w, h)
    for i, want in enumerate(COLORS):
        box = (PAT_X + i * BLOCK, PAT_Y, PAT_X + (i + 1) * BLOCK, PAT_Y + BLOCK)
        assert near(jpeg, box, want), (i, want)
    return exact


def check_idle(vmname, client, frame_bytes):
    """A static screen with a client connected: the refresh keeps ticking but compares
    (almost) nothing and sends nothing."""
    client.request()  # outstanding, as a viewer always has one
    before = status(vmname)["vnc"]
    time.sleep(5)
    after = status(vmname)["vnc"]
    assert after["clients"] >= 1
    assert after["ticks"] - before["ticks"] >= 5, (before, after)  # slowed down, but watching
    compared = after["bytes_compared"] - before["bytes_compared"]
    assert compared < frame_bytes // 10, f"{compared} bytes compared on a static screen ({before} -> {after})"
    assert after["tiles_sent"] == before["tiles_sent"], (before, after)


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="fbuf-")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def clients():
    missing = [t for t in ("gvnccapture", "vncsnapshot") if not shutil.which(t)]
    if missing or not VNCGRAB.is_file():
        pytest.fail(f"needs {missing} and build/vncgrab (libvncserver-dev): scripts/install-deps", pytrace=False)


def fbuf_guest(name, fbuf_opts, extra_cmdline=""):
    g = Guest(boot_args("cmd", extra_cmdline=extra_cmdline,
                        extra_args=["-s", f"5,fbuf,{fbuf_opts}", "-o", f"control.socket={sock(name)}"])[:-1]
              + [name])
    return g


def test_vesafb_two_clients_idle(workdir):
    """No display driver module: vesafb and fbcon use what boot_params.screen_info describes.
    Two clients at once see the same picture; an idle screen costs no comparing."""
    w, h, port, name = 1280, 720, 5977, "fbuf-vesa"  # rows straddle pages (stride 5120)
    g = fbuf_guest(name, f"tcp=127.0.0.1:{port},w={w},h={h}", "module_blacklist=bochs")
    try:
        g.wait_for("HYVE-CMD-READY", timeout=240)
        rc, out = g.run("cat /sys/bus/pci/devices/0000:00:05.0/vendor /sys/bus/pci/devices/0000:00:05.0/device "
                        "/sys/bus/pci/devices/0000:00:05.0/class")
        assert rc == 0 and out.split() == ["0x1234", "0x1111", "0x030000"], out
        fbname, fw, fh, bpp, stride = fb_info(g)
        assert "VESA VGA" in fbname and (fw, fh, bpp, stride) == (w, h, 32, w * 4), (fbname, fw, fh, bpp, stride)
        viewer = RfbClient(("127.0.0.1", port))
        assert (viewer.width, viewer.height) == (w, h)
        viewer.update(incremental=False)

        # fbcon draws text on the framebuffer from early boot.
        rc, out = g.run("printf '\\033[H\\033[2JHYVE FBCON TEXT\\n' > /dev/tty1; echo 0 > /sys/class/graphics/fbcon/cursor_blink")
        assert rc == 0, out
        img = grab_until(f"127.0.0.1:{port}", workdir / "console.ppm", lambda i: lit_pixels(i) > 100)
        assert lit_pixels(img) > 100, "console area is blank"

        exact = check_pattern(g, port, workdir, w, h, stride, name)
        viewer.wait_until(client_pattern_ok)  # the first client, connected all along
        assert bytes(viewer.pixels[:w * 4 * 64]) != bytes(w * 4 * 64)  # and the console text
        assert exact.getpixel((PAT_X, PAT_Y)) == viewer.pixel(PAT_X, PAT_Y)

        check_idle(name, viewer, w * h * 4)

        # Later writes arrive (dirty logging of the framebuffer slot), at both clients.
        rc, out = g.run(f"dd if=/dev/zero bs={stride} count={BLOCK} 2>/dev/null | fbwrite {PAT_Y * stride}")
        assert rc == 0, out
        img = grab_until(f"127.0.0.1:{port}", workdir / "cleared.ppm", cleared_ok)
        assert cleared_ok(img)
        viewer.wait_until(lambda c: c.pixel(PAT_X, PAT_Y) == (0, 0, 0))
        viewer.close()
    finally:
        g.kill()


def test_bochs_mode_change_and_snapshot(workdir, tmp_path):
    """The stock bochs DRM driver programs DISPI; a connected client gets the new size
    (DesktopSize) and the right pixels; a snapshot keeps mode and picture."""
    port, name = 5976, "fbuf-bochs"
    g = fbuf_guest(name, f"tcp=127.0.0.1:{port},w=800,h=600", "hyve.noload=bochs")
    try:
        g.wait_for("HYVE-CMD-READY", timeout=240)
        viewer = RfbClient(("127.0.0.1", port))
        assert (viewer.width, viewer.height) == (800, 600)
        viewer.update(incremental=False)
        rc, out = g.run("modprobe bochs && sleep 1 && readlink /sys/bus/pci/devices/0000:00:05.0/driver && "
                        "echo 0 > /sys/class/graphics/fbcon/cursor_blink")  # a static picture to compare
        assert rc == 0 and "bochs" in out, out
        fbname, w, h, bpp, stride = fb_info(g)
        assert "bochs" in fbname and bpp == 32 and (w, h) != (800, 600), (fbname, w, h)
        viewer.wait_until(lambda c: (c.width, c.height) == (w, h))
        exact = check_pattern(g, port, workdir, w, h, stride, name)
        viewer.wait_until(client_pattern_ok)
        viewer.close()

        snap = tmp_path / "fbuf.snap"
        r = hyvectl(name, "snapshot", snap, "--exit")
        assert r.returncode == 0, r.stderr
        assert g.wait_exit(120) == 1
        g = Guest(["-r", snap, "-l", "com1,stdio", "-o", f"control.socket={sock(name)}", name])
        wait_listening(g, port)   # the restored hyve listens only once it has read the snapshot
        again = grab_until(f"127.0.0.1:{port}", workdir / "restored.ppm", pattern_ok)
        assert again.size == (w, h) and again.tobytes() == exact.tobytes()
        rc, out = g.run("cat /sys/class/graphics/fb0/virtual_size")
        assert rc == 0 and out.strip() == f"{w},{h}", out
    finally:
        g.kill()


def test_unix_password_wait(workdir):
    """A UNIX listener with a password and `wait`: the guest starts only when a client has
    authenticated; wrong passwords are refused, the right one (libvncclient and our own
    client) accepted. (noVNC in headless Chromium is checked by the unit suite against the
    same display and VNC server without KVM: Chromium under the emulated test host stalled.)"""
    name = "fbuf-unix"
    path = os.path.join(RUNDIR, "fbuf-vnc.sock")
    if os.path.exists(path):
        os.unlink(path)
    g = fbuf_guest(name, f"unix={path},password=hyve-pw,wait")
    try:
        wait_for_file(g, path)
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        with pytest.raises(AuthFailed):
            RfbClient(path, password="wrong")
        with pytest.raises(AuthFailed):
            RfbClient(path)  # no password at all
        r = subprocess.run([str(VNCGRAB), "-p", "nope", path, str(workdir / "x.ppm")], capture_output=True, timeout=60)
        assert r.returncode != 0
        assert vm_state(name) == "waiting", "the guest started before a client authenticated"
        assert "HYVE-INIT-REACHED" not in g.text() and not g.output
        viewer = connect_after_backoff(path, "hyve-pw")
        g.wait_for("HYVE-CMD-READY", timeout=240)
        rc, out = g.run("printf '\\033[H\\033[2JHYVE FBCON TEXT\\n' > /dev/tty1")
        img = grab_until(path, workdir / "unix.ppm", lambda i: lit_pixels(i) > 100, "-p", "hyve-pw", "-e", "zrle")
        assert lit_pixels(img) > 100
        viewer.update(incremental=False)
        viewer.close()
    finally:
        g.kill()


def wait_for_file(g, path, timeout=60):
    """Until hyve has created path (a socket); fails with its output if it exits first."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline and g.proc.poll() is None, g.text_tail()
        time.sleep(0.2)


def vm_state(name):
    r = hyvectl(name, "status")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["state"]


def test_wait_answers_signals(workdir):
    """While `wait` holds the guest for a VNC client, hyve still serves its control socket and
    signals (it once sat in a loop of its own until a client came): SIGTERM presses the power
    button of a guest that is not running yet, SIGINT powers it off, status 1."""
    name = "fbuf-wait-sig"
    path = os.path.join(RUNDIR, "fbuf-wait-sig.vnc")  # not the control socket, RUNDIR/NAME.sock
    g = fbuf_guest(name, f"unix={path},wait")
    try:
        wait_for_file(g, sock(name))
        assert vm_state(name) == "waiting"
        g.proc.send_signal(signal.SIGTERM)
        g.proc.send_signal(signal.SIGINT)
        assert g.wait_exit(60) == 1
    finally:
        g.kill()


def make_certificate(d):
    """A self-signed server certificate (EC P-256) for 127.0.0.1 and its key, PEM files."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hyve test display")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = d / "display.crt", d / "display.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_tls_wait_two_vcpus_confined(workdir):
    """VeNCrypt X509Vnc served by the confined event loop, with `wait` and two vCPUs: the vCPU
    threads exist, each under its filter, before the main thread confines itself, and run the
    guest only once a client has authenticated inside TLS; a client that does not trust the
    certificate gets no further than the TLS handshake."""
    from test_sandbox import threads

    name, port = "fbuf-tls", 5973
    cert, key = make_certificate(workdir)
    fbuf = f"5,fbuf,tcp=127.0.0.1:{port},password=tls-pw,tls-cert={cert},tls-key={key},wait"
    g = Guest(boot_args("cmd", cpus=2, extra_args=["-s", fbuf, "-o", f"control.socket={sock(name)}"])[:-1]
              + [name])
    try:
        wait_listening(g, port)
        # The control socket opens after the display's listener: wait for it too.
        wait_for_file(g, sock(name))
        assert vm_state(name) == "waiting"
        untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        untrusting.check_hostname = False
        untrusting.load_default_certs()
        with pytest.raises(ssl.SSLCertVerificationError):
            RfbClient(("127.0.0.1", port), password="tls-pw", tls=untrusting)
        assert vm_state(name) == "waiting"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cert)
        viewer = RfbClient(("127.0.0.1", port), password="tls-pw", tls=ctx)
        assert viewer.tls_version in ("TLSv1.2", "TLSv1.3"), viewer.tls_version
        g.wait_for("HYVE-CMD-READY", timeout=240)
        ts = threads(g.proc.pid)
        assert {"vcpu0", "vcpu1"} <= {n for n, _ in ts.values()}, ts
        for n, fields in ts.values():
            assert fields["Seccomp"] == "2" and int(fields["Seccomp_filters"]) == 1, (n, fields)
        rc, out = g.run("printf '\\033[H\\033[2JHYVE OVER TLS\\n' > /dev/tty1")
        assert rc == 0, out
        viewer.update(False)
        viewer.wait_until(lambda c: sum(c.pixels) > 100 * 3 * 0x80)  # about 100 lit pixels of text on black
        viewer.close()
        g.send("poweroff -f\n")
        assert g.wait_exit(90) == 1
    finally:
        g.kill()


VGA_FONT = "/usr/share/consolefonts/Uni2-VGA16.psf.gz"  # fbuf's default font= (console-setup-linux)
# Linux's default console colours as vgacon loads them into the DAC (6 bits, widened as hyve does).
VGA_BRIGHT_YELLOW, VGA_BLUE = (0xFF, 0xFF, 0x55), (0x00, 0x00, 0xAA)


def psf_glyphs(path):
    """{character: 16 rows of 8 bits} from a PSF1 font with a Unicode table, read here
    independently of hyve's loader."""
    import gzip
    import struct
    data = gzip.open(path).read()
    assert data[:2] == b"\x36\x04", "not a PSF1 font"
    mode, height = data[2], data[3]
    count = 512 if mode & 1 else 256
    table = data[4 + count * height:]
    glyphs, g, seq = {}, 0, False
    for (u,) in struct.iter_unpack("<H", table[:len(table) // 2 * 2]):
        if u == 0xFFFF:
            g, seq = g + 1, False
        elif u == 0xFFFE:
            seq = True
        elif not seq and chr(u) not in glyphs:
            glyphs[chr(u)] = data[4 + g * height:4 + (g + 1) * height]
    return glyphs, height


def cell_pixels(img, col, row):
    return [img.getpixel((col * 8 + x, row * 16 + y)) for y in range(16) for x in range(8)]


def expected_cell(glyph, fg, bg):
    return [fg if glyph[y] & (0x80 >> x) else bg for y in range(16) for x in range(8)]


def vga_text_ok(text, fg, bg):
    glyphs, _ = psf_glyphs(VGA_FONT)
    want = [expected_cell(glyphs[c], fg, bg) for c in text]
    return lambda img: img.size == (640, 400) and all(cell_pixels(img, i, 0) == w for i, w in enumerate(want))


def wait_listening(g, port, timeout=120):
    """Until the (restored) hyve accepts VNC connections; fails with its stderr if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        assert g.proc.poll() is None, f"hyve exited with {g.proc.poll()}: {g.stderr.decode(errors='replace')}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}: {g.stderr.decode(errors='replace')}"
            time.sleep(0.2)


def test_vga_text_console(workdir, tmp_path):
    """vga=on: direct boot describes VGA text mode, the stock kernel's vgacon writes the
    0xB8000 window; VNC shows the text rendered with the font, cell for cell as this test
    renders it from the font file; hyvectl screenshot agrees; an idle text screen costs no
    comparing; a snapshot keeps the text."""
    if not os.path.exists(VGA_FONT):
        pytest.fail(f"needs {VGA_FONT} (console-setup-linux): scripts/install-deps", pytrace=False)
    port, name, text = 5975, "fbuf-vga", "HYVE VGA TEXT"
    g = fbuf_guest(name, f"tcp=127.0.0.1:{port},vga=on", "hyve.noload=bochs")
    try:
        g.wait_for("HYVE-CMD-READY", timeout=240)
        rc, out = g.run("cat /sys/class/vtconsole/vtcon*/name")
        assert rc == 0 and "VGA+" in out, out
        viewer = RfbClient(("127.0.0.1", port))
        assert (viewer.width, viewer.height) == (640, 400)
        viewer.update(incremental=False)
        # Home, clear, cursor off, bold yellow on blue: the string in the top row's first cells.
        rc, out = g.run(f"printf '\\033[H\\033[2J\\033[?25l\\033[1;33;44m{text}\\033[0m' > /dev/tty1")
        assert rc == 0, out
        ok = vga_text_ok(text, VGA_BRIGHT_YELLOW, VGA_BLUE)
        img = grab_until(f"127.0.0.1:{port}", workdir / "vga.ppm", ok)
        assert img.size == (640, 400)
        glyphs, height = psf_glyphs(VGA_FONT)
        assert height == 16
        for i, c in enumerate(text):
            assert cell_pixels(img, i, 0) == expected_cell(glyphs[c], VGA_BRIGHT_YELLOW, VGA_BLUE), (i, c)
        assert set(cell_pixels(img, len(text), 0)) == {(0, 0, 0)}  # cleared to black after the string
        for enc in ("zrle", "tight"):
            assert grab(f"127.0.0.1:{port}", workdir / f"vga-{enc}.ppm", "-e", enc).tobytes() == img.tobytes(), enc
        shot = workdir / "vga.png"
        r = hyvectl(name, "screenshot", shot)
        assert r.returncode == 0, r.stderr
        assert Image.open(shot).convert("RGB").tobytes() == img.tobytes()
        viewer.wait_until(lambda c: c.pixel(0, 0) == img.getpixel((0, 0)) and c.pixel(5, 7) == img.getpixel((5, 7)))
        check_idle(name, viewer, 640 * 400 * 4)
        viewer.close()

        snap = tmp_path / "vga.snap"
        r = hyvectl(name, "snapshot", snap, "--exit")
        assert r.returncode == 0, r.stderr
        assert g.wait_exit(120) == 1
        g = Guest(["-r", snap, "-l", "com1,stdio", "-o", f"control.socket={sock(name)}", name])
        wait_listening(g, port)
        again = grab_until(f"127.0.0.1:{port}", workdir / "vga-restored.ppm", ok)
        assert again.tobytes() == img.tobytes()
        # The restored guest still writes through the window (its KVM slot is back in place).
        rc, out = g.run("printf '\\033[H\\033[1;33;44mAGAIN\\033[0m' > /dev/tty1")
        assert rc == 0, out
        again = grab_until(f"127.0.0.1:{port}", workdir / "vga-again.ppm",
                           vga_text_ok("AGAIN", VGA_BRIGHT_YELLOW, VGA_BLUE))
        assert vga_text_ok("AGAIN", VGA_BRIGHT_YELLOW, VGA_BLUE)(again)
    finally:
        g.kill()


@pytest.mark.parametrize("opts,msg", [
    ("tcp=5979,w=10", "w=10"),
    ("tcp=5979,h=abc", "h=abc"),
    ("tcp=5979,w=4000", "w=4000"),
    ("tcp=70000", "tcp=70000"),
    ("tcp=5979,unix=/tmp/x.sock", "not both"),
    ("tcp=5979,password=123456789", "password"),
    ("unix=/nonexistent-dir/vnc.sock", "/nonexistent-dir/vnc.sock"),
    ("tcp=5979,vga=yes", "vga=yes"),
    ("tcp=5979,vga=on,font=/nonexistent/x.psf", "/nonexistent/x.psf"),
    ("tcp=5979,tls-cert=/nonexistent/c.pem,tls-key=/nonexistent/k.pem", "/nonexistent/c.pem"),
    (f"tcp=5979,tls-cert={REPO}/README.md,tls-key={REPO}/README.md", "tls-cert="),
    ("tcp=5979,tls-cert=/nonexistent/c.pem", "tls-key="),
    ("tcp=5979,tls=anon", "password="),
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


def test_unix_socket_left_by_killed_hyve(workdir):
    """A hyve killed with SIGKILL leaves its VNC socket file behind; the next hyve with the same
    `unix=` path removes it and listens there. While a hyve serves a path, another one may not
    take it: status 4 and one line."""
    name = "fbuf-stale"
    path = os.path.join(RUNDIR, "fbuf-stale.vnc")
    g = fbuf_guest(name, f"unix={path},wait")
    try:
        wait_for_file(g, sock(name))
        g.proc.send_signal(signal.SIGKILL)
        g.proc.wait(30)
    finally:
        g.kill()
    assert os.path.exists(path), "SIGKILL should have left the socket file"
    stale = os.stat(path).st_ino
    g = fbuf_guest(name, f"unix={path},wait")
    try:
        # The new hyve's socket is another file at the same path.
        deadline = time.monotonic() + 60
        while not os.path.exists(path) or os.stat(path).st_ino == stale:
            assert time.monotonic() < deadline and g.proc.poll() is None, g.text_tail()
            time.sleep(0.2)
        RfbClient(path).close()   # the new hyve answers on the old path
        r = run_hyve(["-s", f"5,fbuf,unix={path}", "--kernel", KERNEL, "fbuf-stale-2"])
        assert r.returncode == 4, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and path in lines[0] and "in use" in lines[0], r.stderr
    finally:
        g.kill()
