"""Confinement (docs/security.md): every thread of a running hyve is under its
seccomp filter, a forbidden call from any thread kind ends hyve with a line
naming the call (status 4), -u switches to another user once set up, and the
control socket serves only the VM's user and root."""
import os
import pathlib
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import HYVECTL, Guest, boot_args, hyvectl, sock

POWERED_OFF = 1
ERROR = 4


def forbidden(kind):
    return rf"hyve: sandbox: {kind} thread made a forbidden system call: socket \(41\)"


def start(name, *extra, test="cmd", cpus=1, ready=True):
    g = Guest(boot_args(test, cpus=cpus, extra_args=["-o", f"control.socket={sock(name)}", *extra])[:-1] + [name])
    if ready:
        g.wait_for("HYVE-CMD-READY", timeout=240)
    return g


def wait_stderr(g, pattern, timeout=120):
    """Waits until hyve ends; its stderr must match pattern. Returns the exit status."""
    rc = g.wait_exit(timeout)
    err = g.stderr.decode(errors="replace")
    assert re.search(pattern, err), err
    return rc


def threads(pid):
    """{tid: (name, status fields)} of every thread of pid. A thread that ends between the listing
    and the read (after a restore, the RAM verifier ends when it has checked every page) is left
    out: it carried its filter until then, or hyve would have died of it."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = {}
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[int(tid)] = (fields["Name"], fields)
    return out


def test_every_thread_is_confined(tmp_path):
    """Main loop, vCPUs and I/O threads all carry a filter and no_new_privs."""
    g = start("sbx-all", "-s", "3,virtio-rnd", cpus=2)
    try:
        ts = threads(g.proc.pid)
        names = sorted(name for name, _ in ts.values())
        assert {"vcpu0", "vcpu1", "io-rnd"} <= set(names), names
        for name, fields in ts.values():
            assert fields["Seccomp"] == "2", (name, fields["Seccomp"])
            assert fields["NoNewPrivs"] == "1", name
            assert int(fields["Seccomp_filters"]) == 1, (name, fields["Seccomp_filters"])
        g.send("poweroff -f\n")
        assert g.wait_exit(90) == POWERED_OFF
    finally:
        g.kill()


def test_sandbox_off_confines_nothing():
    g = start("sbx-off", "-o", "sandbox=off", "-s", "3,virtio-rnd")
    try:
        for name, fields in threads(g.proc.pid).values():
            assert fields["Seccomp"] == "0", name
        g.send("poweroff -f\n")
        assert g.wait_exit(90) == POWERED_OFF
    finally:
        g.kill()


@pytest.mark.parametrize("kind", ["main", "vcpu", "io"])
def test_forbidden_call_at_start_ends_hyve(kind):
    """These kinds confine themselves before the guest runs; the self-test call comes right after."""
    g = start(f"sbx-{kind}", "-o", f"sandbox.selftest={kind}", "-s", "3,virtio-rnd", ready=False)
    try:
        assert wait_stderr(g, forbidden(kind)) == ERROR
    finally:
        g.kill()


def test_forbidden_call_from_snapshot_writer_ends_hyve(tmp_path):
    g = start("sbx-snap", "-o", "sandbox.selftest=snapshot")
    try:
        hyvectl("sbx-snap", "snapshot", tmp_path / "x.snap")
        assert wait_stderr(g, forbidden("snapshot")) == ERROR
        assert not (tmp_path / "x.snap").exists()
    finally:
        g.kill()


def test_forbidden_call_from_ram_verifier_ends_hyve(tmp_path):
    """A lazy restore's verifier is confined too (and the snapshot itself was written confined)."""
    path = tmp_path / "v.snap"
    g = start("sbx-verify-src")
    try:
        r = hyvectl("sbx-verify-src", f"--suspend={path}")
        assert r.returncode == 0, r.stderr
        assert g.wait_exit(90) == POWERED_OFF
    finally:
        g.kill()
    r = Guest(["-r", path, "-l", "com1,stdio", "-o", f"control.socket={sock('sbx-verify')}",
               "-o", "sandbox.selftest=verifier", "sbx-verify"])
    try:
        assert wait_stderr(r, forbidden("verifier")) == ERROR
    finally:
        r.kill()


def test_snapshot_file_cannot_turn_the_sandbox_off(tmp_path):
    """sandbox.* keys are about this process, never saved nor taken from a file."""
    path = tmp_path / "s.snap"
    g = start("sbx-keysrc", "-o", "sandbox=off")
    try:
        r = hyvectl("sbx-keysrc", f"--suspend={path}")
        assert r.returncode == 0, r.stderr
        assert g.wait_exit(90) == POWERED_OFF
    finally:
        g.kill()
    r = Guest(["-r", path, "-l", "com1,stdio", "-o", f"control.socket={sock('sbx-keydst')}", "sbx-keydst"])
    try:
        r.send("echo restored\n")
        r.wait_for("restored", timeout=120)
        for name, fields in threads(r.proc.pid).values():
            assert fields["Seccomp"] == "2", name
        r.send("poweroff -f\n")
        assert r.wait_exit(90) == POWERED_OFF
    finally:
        r.kill()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("backend", ["tcp", "unix"])
def test_serial_socket_backend_confined(tmp_path, backend):
    """COM2 on a socket: the loop accepts and reads the client, a vCPU sends the guest's output to it."""
    if backend == "tcp":
        port = free_port()
        spec, family, addr = f"tcp=127.0.0.1:{port}", socket.AF_INET, ("127.0.0.1", port)
    else:
        path = str(tmp_path / "com2.sock")
        spec, family, addr = f"unix={path}", socket.AF_UNIX, path
    g = start(f"sbx-com2-{backend}", "-l", f"com2,{spec}")
    try:
        c = socket.socket(family, socket.SOCK_STREAM)
        c.settimeout(60)
        c.connect(addr)
        rc, out = g.run("stty -F /dev/ttyS1 raw -echo && echo from-the-guest > /dev/ttyS1")
        assert rc == 0, out
        got = b""
        while b"from-the-guest" not in got:
            chunk = c.recv(4096)
            assert chunk, got
            got += chunk
        # The guest's driver drops what arrived before it opened the port: send until it has read a whole line.
        start_at = len(g.output)
        g.send("grep -m1 from-the-client /dev/ttyS1; echo read-done\n")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            c.sendall(b"from-the-client\n")
            try:
                g.wait_for("read-done", timeout=2, start=start_at)
                break
            except AssertionError:
                if g.proc.poll() is not None:
                    raise
        g.wait_for("from-the-client\r?\nread-done", timeout=5, start=start_at)
        c.close()
        g.send("poweroff -f\n")
        assert g.wait_exit(90) == POWERED_OFF
    finally:
        g.kill()


# ---- -u USER ----

def nobody():
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.fail("the test host has no user nobody")


def status_ids(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    return fields["Uid"].split(), fields["Gid"].split(), fields["Groups"].split()


def test_unknown_user_is_refused():
    g = Guest(boot_args("cmd", extra_args=["-u", "no-such-user-for-hyve"]))
    try:
        assert g.wait_exit(30) == ERROR
        err = g.stderr.decode(errors="replace")
        assert "sandbox.user=no-such-user-for-hyve: no such user" in err, err
        assert len(err.strip().splitlines()) == 1, err
    finally:
        g.kill()


def test_switch_to_nobody(tmp_path):
    """Started as root with -u nobody: every id is nobody's once the guest runs, the disk
    opened as root still works, snapshots land in a folder nobody may write, and the
    control socket serves nobody and root but not a third user."""
    if os.geteuid() != 0:
        pytest.fail("this test starts hyve as root (the test host runs the suite as root)")
    pw = nobody()
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"HYVE-SANDBOX-DISK" + bytes(1024 * 1024 - 17))
    os.chmod(disk, 0o600)  # root's: only the set-up may open it
    # The socket and the snapshots go where nobody can reach them (pytest's folders are root's, 0700);
    # the temporary folder's parent ($TMPDIR, a tmpfs in the test host) is searchable by everyone.
    base = pathlib.Path(tempfile.mkdtemp(prefix="sbx-nobody-"))
    assert os.stat(base.parent).st_mode & 0o001, f"{base.parent} must be searchable by others"
    os.chmod(base, 0o711)
    snaps = base / "snaps"
    snaps.mkdir()
    os.chown(snaps, pw.pw_uid, pw.pw_gid)
    ctl = base / "ctl.sock"
    g = Guest(boot_args("cmd", extra_args=["-u", "nobody", "-s", f"3,virtio-blk,{disk}",
                                           "-o", f"control.socket={ctl}"])[:-1] + ["sbx-nobody"])
    try:
        g.wait_for("HYVE-CMD-READY", timeout=240)
        uids, gids, groups = status_ids(g.proc.pid)
        assert uids == [str(pw.pw_uid)] * 4, uids
        assert gids == [str(pw.pw_gid)] * 4, gids
        assert "0" not in groups, groups
        for name, fields in threads(g.proc.pid).values():
            assert fields["Uid"].split() == [str(pw.pw_uid)] * 4, name
        rc, out = g.run("dd if=/dev/vda bs=17 count=1 2>/dev/null")
        assert rc == 0 and "HYVE-SANDBOX-DISK" in out, out
        assert os.stat(ctl).st_uid == pw.pw_uid

        def ctl_as(uid, gid, *args):
            return subprocess.run([str(HYVECTL), f"--socket={ctl}", *map(str, args)], capture_output=True,
                                  text=True, timeout=120, user=uid, group=gid, extra_groups=[])

        r = ctl_as(pw.pw_uid, pw.pw_gid, "status")
        assert r.returncode == 0 and '"running"' in r.stdout + r.stderr, r
        other = pw.pw_uid - 1  # another unprivileged user (not the VM's)
        os.chmod(ctl, 0o666)   # even with a socket opened up, the peer check refuses
        r = ctl_as(other, pw.pw_gid, "status")
        assert r.returncode != 0 and "permission denied" in r.stdout + r.stderr, r
        assert "refused a client running as uid" in g.stderr.decode(errors="replace")
        r = subprocess.run([str(HYVECTL), f"--socket={ctl}", "snapshot", snaps / "a.snap"], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        st = os.stat(snaps / "a.snap")
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid)
        rc, out = g.run("echo still-running")
        assert "still-running" in out
        g.send("poweroff -f\n")
        assert g.wait_exit(90) == POWERED_OFF
    finally:
        g.kill()
        shutil.rmtree(base, ignore_errors=True)
