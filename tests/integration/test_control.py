"""The control socket and hyvectl against real guests: status, pause/resume
(the guest really stops), error replies that leave the VM running, the
exit statuses of poweroff (through the guest's ACPI), reset and quit,
snapshots, and one VM per name."""
import base64
import gzip
import json
import os
import pathlib
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import HYVE, KERNEL, boot_args, run_hyve

HYVECTL = pathlib.Path(os.environ.get("HYVECTL_BIN", HYVE.parent / "hyvectl"))
RUNDIR = os.environ.get("HYVE_RUNDIR", "/run")

REBOOTED, POWERED_OFF, ERROR = 0, 1, 4


@pytest.fixture
def sockdir():
    """A folder for control sockets on a file system where they work (tmpfs in the test host)."""
    os.makedirs(RUNDIR, exist_ok=True)
    d = tempfile.mkdtemp(prefix="ctl-", dir=RUNDIR)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def hyvectl(*args, cwd=None, timeout=120):
    if not HYVECTL.is_file():
        pytest.fail(f"hyvectl not found at {HYVECTL}", pytrace=False)
    return subprocess.run([str(HYVECTL), *[str(a) for a in args]], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


def ctl(sock, *args, **kw):
    """hyvectl --socket=SOCK ARGS, which must succeed; returns its stdout."""
    r = hyvectl(f"--socket={sock}", *args, **kw)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r.stdout


def status(sock):
    return json.loads(ctl(sock, "status"))


def boot_with_socket(boot, test, sock, **kw):
    return boot(test, extra_args=["-o", f"control.socket={sock}"], **kw)


class Client:
    """A raw protocol client: one JSON line out, one line back."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(60)
        self.s.connect(str(path))
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, obj):
        self.send(json.dumps(obj).encode() + b"\n")
        return self.line()

    def closed(self):
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


def counters(g, start=0):
    return [int(n) for n in re.findall(r"COUNTER (\d+)", g.text()[start:])]


def test_status_and_socket_mode(boot, sockdir):
    sock = sockdir / "vm.sock"
    g = boot_with_socket(boot, "cmd", sock, cpus=2, mem="512M")
    g.wait_for("HYVE-CMD-READY", timeout=180)
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    s = status(sock)
    assert s["name"] == "test-cmd"
    assert s["state"] == "running"
    assert s["cpus"] == 2
    assert s["memory"] == 512 << 20
    assert s["uptime"] > 0
    assert s["snapshot_in_progress"] is False
    # --json gives the whole reply line.
    r = json.loads(ctl(sock, "--json", "status"))
    assert r["ok"] is True and r["state"] == "running"
    # Several clients at once, one of them idle.
    idle = Client(sock)
    a, b = Client(sock), Client(sock)
    assert a.request({"cmd": "status", "id": 1})["id"] == 1
    assert b.request({"cmd": "status", "id": "b"})["id"] == "b"
    for c in (idle, a, b):
        c.close()
    g.send("poweroff -f\n")
    assert g.wait_exit(60) == POWERED_OFF
    assert not sock.exists(), "the socket is removed when the VM ends"


def test_pause_stops_the_guest_and_resume_continues(boot, sockdir):
    sock = sockdir / "vm.sock"
    g = boot_with_socket(boot, "counter", sock)
    g.wait_for(r"COUNTER 5\b", timeout=180)
    ctl(sock, "pause")
    assert status(sock)["state"] == "paused"
    ctl(sock, "pause")  # idempotent
    time.sleep(0.5)  # output already on its way drains
    before = counters(g)[-1]
    time.sleep(3)
    assert counters(g)[-1] == before, "the guest kept running while paused"
    ctl(sock, "resume")
    assert status(sock)["state"] == "running"
    ctl(sock, "resume")  # idempotent
    g.wait_for(rf"COUNTER {before + 5}\b", timeout=60)
    seq = counters(g)
    assert seq == list(range(seq[0], seq[0] + len(seq))), "the count must carry on without a gap"


def test_paused_guest_does_not_answer_on_serial(boot, sockdir):
    sock = sockdir / "vm.sock"
    g = boot_with_socket(boot, "cmd", sock)
    g.wait_for("HYVE-CMD-READY", timeout=180)
    ctl(sock, "pause")
    start = len(g.output)
    g.send("echo ping-$((20+22))\n")
    time.sleep(3)
    assert "ping-42" not in g.text()[start:]
    ctl(sock, "resume")
    g.wait_for("ping-42", timeout=60, start=start)


def test_bad_requests_get_errors_and_the_vm_runs_on(boot, sockdir):
    sock = sockdir / "vm.sock"
    g = boot_with_socket(boot, "cmd", sock)
    g.wait_for("HYVE-CMD-READY", timeout=180)
    c = Client(sock)
    c.send(b'{"cmd": "status"\n')
    r = c.line()
    assert r["ok"] is False and "malformed JSON" in r["error"]
    c.send(b"[1,2]\n")
    assert c.line()["ok"] is False
    r = c.request({"cmd": "frobnicate", "id": 5})
    assert r == {"ok": False, "id": 5, "error": "unknown command 'frobnicate'"}
    r = c.request({"cmd": "snapshot", "path": 42})
    assert r["ok"] is False and "\"path\" must be a string" in r["error"]
    r = c.request({"cmd": "snapshot", "path": "relative.snap"})
    assert r["ok"] is False and "absolute" in r["error"]
    r = c.request({"cmd": "pause", "force": True})
    assert r["ok"] is False and "unknown argument 'force'" in r["error"]
    # The connection survives all of that.
    assert c.request({"cmd": "status"})["state"] == "running"
    # Snapshots to places that cannot be written fail with a reason; the VM resumes.
    for path in ("/proc/hyve-test.snap", "/nonexistent-dir/vm.snap"):
        r = c.request({"cmd": "snapshot", "path": path})
        assert r["ok"] is False and r["error"], r
        assert "\n" not in r["error"]
        assert c.request({"cmd": "status"})["state"] == "running"
    r = hyvectl(f"--socket={sock}", "snapshot", "/proc/hyve-test.snap")
    assert r.returncode == 1 and r.stderr.startswith("hyvectl: "), r
    assert len(r.stderr.strip().splitlines()) == 1
    # An overlong line is refused and its connection closed; others are unaffected.
    big = Client(sock)
    big.send(b" " * (70 * 1024))
    r = big.line()
    assert r["ok"] is False and "longer than 65536" in r["error"]
    assert big.closed()
    assert c.request({"cmd": "status"})["state"] == "running"
    c.close()
    rc, out = g.run("echo still-alive")
    assert out.strip() == "still-alive"


def test_hyvectl_usage_and_unreachable(sockdir):
    r = hyvectl("--socket", sockdir / "nobody.sock", "status")
    assert r.returncode == 2 and str(sockdir / "nobody.sock") in r.stderr, r
    r = hyvectl("--vm=x", "frobnicate")
    assert r.returncode == 64 and "unknown command" in r.stderr
    r = hyvectl("status")
    assert r.returncode == 64
    r = hyvectl("--vm=x", "pause", "--exit")
    assert r.returncode == 64


def _load_power_button_driver(g):
    """The guest's ACPI power button driver: from the image if it has it, else sent over the serial line."""
    rc, _ = g.run("modprobe button 2>/dev/null || [ -d /sys/bus/acpi/drivers/button ]")
    if rc == 0:
        return
    kver = KERNEL.name.removeprefix("vmlinuz-")
    ko = KERNEL.parent.parent / "lib" / "modules" / kver / "kernel" / "drivers" / "acpi" / "button.ko"
    if not ko.is_file():
        pytest.fail(f"the guest image has no ACPI button driver and {ko} is missing", pytrace=False)
    lines = base64.encodebytes(gzip.compress(ko.read_bytes())).decode().splitlines()
    start = len(g.output)
    g.send(f"head -n {len(lines)} | base64 -d | gunzip > /tmp/button.ko && insmod /tmp/button.ko\n")
    g.send("".join(l + "\n" for l in lines))
    m = g.wait_for(r"HYVE-CMD-END rc=(\d+)", timeout=300, start=start)
    assert m.group(1) == "0", g.text()[start:][-2000:]


def test_poweroff_goes_through_acpi(boot, sockdir):
    sock = sockdir / "vm.sock"
    g = boot_with_socket(boot, "cmd", sock)
    g.wait_for("HYVE-CMD-READY", timeout=180)
    _load_power_button_driver(g)
    # busybox acpid runs /etc/acpi/PWRF/00000080 when the power button is pressed
    # (a daemon: its output goes to the console explicitly).
    rc, out = g.run("grep -l 'Power Button' /sys/class/input/*/name && mkdir -p /etc/acpi/PWRF && "
                    "printf '#!/bin/sh\\necho GUEST-SHUTDOWN >/dev/console\\npoweroff -f\\n' "
                    "> /etc/acpi/PWRF/00000080 && chmod 755 /etc/acpi/PWRF/00000080 && "
                    "acpid -l /tmp/acpid.log && sleep 1 && pidof acpid")
    assert rc == 0, out
    start = len(g.output)
    ctl(sock, "poweroff")
    g.wait_for("GUEST-SHUTDOWN", timeout=60, start=start)
    assert g.wait_exit(60) == POWERED_OFF


def test_reset_exits_0(boot, sockdir):
    sock = sockdir / "vm.sock"
    g = boot_with_socket(boot, "cmd", sock)
    g.wait_for("HYVE-CMD-READY", timeout=180)
    c = Client(sock)
    assert c.request({"cmd": "reset", "id": 1}) == {"ok": True, "id": 1, "exit_status": REBOOTED}
    assert g.wait_exit(30) == REBOOTED
    assert not sock.exists()


def test_quit_exits_1_even_when_paused(boot, sockdir):
    sock = sockdir / "vm.sock"
    g = boot_with_socket(boot, "cmd", sock)
    g.wait_for("HYVE-CMD-READY", timeout=180)
    ctl(sock, "pause")
    ctl(sock, "quit")
    assert g.wait_exit(30) == POWERED_OFF


def test_second_vm_with_the_same_socket_is_refused(boot, sockdir):
    sock = sockdir / "vm.sock"
    g = boot_with_socket(boot, "cmd", sock)
    g.wait_for("HYVE-CMD-READY", timeout=180)
    r = run_hyve(boot_args("cmd", extra_args=["-o", f"control.socket={sock}"]))
    assert r.returncode == ERROR, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "VM test-cmd already running" in lines[0], r.stderr
    assert "Linux version" not in r.stdout
    # The first VM is untouched, its socket still answers.
    assert status(sock)["state"] == "running"


def test_default_socket_and_stale_file(boot):
    """Without control.socket the socket is /run/hyve/NAME.sock, found by hyvectl --vm=NAME."""
    if not os.access("/run", os.W_OK):
        pytest.skip("/run is not writable here: the default socket cannot be created")
    sock = pathlib.Path("/run/hyve/test-cmd.sock")
    if sock.exists():
        sock.unlink()
    # A socket file left by a VM that died: nobody listens, so it is replaced.
    os.makedirs(sock.parent, exist_ok=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))
    dead.close()
    g = boot("cmd")
    g.wait_for("HYVE-CMD-READY", timeout=180)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    r = hyvectl("--vm=test-cmd", "status")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "test-cmd"
    r = run_hyve(boot_args("cmd"))
    assert r.returncode == ERROR and "VM test-cmd already running" in r.stderr, (r.returncode, r.stderr,
                                                                                 r.stdout[-2000:])
    ctl(sock, "quit")
    assert g.wait_exit(30) == POWERED_OFF
    assert not sock.exists()


def test_control_socket_off(boot):
    default = pathlib.Path("/run/hyve/test-cmd.sock")
    if default.exists():
        default.unlink()
    g = boot("cmd", extra_args=["-o", "control.socket=off"])
    g.wait_for("HYVE-CMD-READY", timeout=180)
    assert not default.exists()
    assert g.stderr.decode(errors="replace") == ""
    g.send("poweroff -f\n")
    assert g.wait_exit(60) == POWERED_OFF


def test_checkpoint_keeps_running_and_suspend_exits(boot, sockdir, tmp_path):
    sock = sockdir / "vm.sock"
    g = boot_with_socket(boot, "counter", sock)
    g.wait_for(r"COUNTER 3\b", timeout=180)
    # A relative FILE is made absolute by hyvectl (hyve's working directory differs).
    r = hyvectl(f"--socket={sock}", "snapshot", "a.snap", cwd=tmp_path)
    assert r.returncode == 0, (r.stderr, g.stderr.decode(errors="replace"))
    assert (tmp_path / "a.snap").stat().st_size > 0
    n = counters(g)[-1]
    g.wait_for(rf"COUNTER {n + 3}\b", timeout=60)
    assert status(sock)["state"] == "running"
    # A paused VM stays paused after a checkpoint.
    ctl(sock, "pause")
    ctl(sock, f"--checkpoint={tmp_path / 'b.snap'}")
    assert status(sock)["state"] == "paused"
    ctl(sock, "resume")
    # Suspend: the reply arrives, then hyve ends with status 1.
    c = Client(sock)
    r = c.request({"cmd": "snapshot", "path": str(tmp_path / "c.snap"), "exit": True, "id": "s"})
    assert r == {"ok": True, "id": "s", "path": str(tmp_path / "c.snap"), "state": "exiting"}
    assert g.wait_exit(60) == POWERED_OFF
    assert (tmp_path / "c.snap").stat().st_size > 0
    assert not sock.exists()
