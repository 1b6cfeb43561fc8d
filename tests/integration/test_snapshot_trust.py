"""What a snapshot file may choose (docs/security.md, "Snapshot files"): the machine always,
its host bindings only when the file is the user's own; secrets never reach the file and are
given again on restore; a restore never listens beyond loopback without a password unless the
command line asks for that listener."""
import json
import os
import stat
import subprocess

import pytest

from conftest import HYVECTL, Guest, boot_args, hyvectl, run_hyve, sock
from rfb_client import AuthFailed, RfbClient, connect_after_backoff
import snapshot_file
from test_snapshot import POWERED_OFF, assert_consecutive, counters

ERROR = 4
PASSWORD = "s3cret"
NOBODY = 65534


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    """A counter guest with a disk and a password-protected VNC display on a UNIX socket, suspended."""
    d = tmp_path_factory.mktemp("trust")
    disk, vnc, name = d / "disk.img", d / "vnc.sock", "trust-src"
    disk.write_bytes(bytes(1 << 20))
    g = Guest(boot_args("counter", mem="128M",
                        extra_args=["-o", f"control.socket={sock(name)}", "-s", f"4,virtio-blk,{disk}",
                                    "-s", f"6,fbuf,unix={vnc},password={PASSWORD}"])[:-1] + [name])
    g.wait_for(r"COUNTER 5\r?\n", timeout=180)
    r = hyvectl(name, f"--suspend={d / 'vm.snap'}")
    assert r.returncode == 0, r.stderr
    assert g.wait_exit(60) == POWERED_OFF
    return dict(dir=d, path=d / "vm.snap", disk=disk, vnc=vnc, before=g.text())


def variant(snap, name, mode=None, owner=None):
    path = snap["dir"] / name
    subprocess.run(["cp", "--sparse=always", str(snap["path"]), str(path)], check=True)
    if mode is not None:
        os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner, -1)
    return path


def crafted(snap, name, change):
    """A copy of the snapshot whose records change(records) rewrote (the file stays the user's own)."""
    _, records = snapshot_file.read(snap["path"])
    records = change(records) or records
    path = snap["dir"] / name
    snapshot_file.write(path, records, snap["path"])
    os.chmod(path, 0o600)
    return path


def refused(args, *fragments):
    r = run_hyve(args, timeout=120)
    assert r.returncode == ERROR, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("hyve: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def open_files(g):
    fds = f"/proc/{g.proc.pid}/fd"
    return {os.readlink(os.path.join(fds, f)) for f in os.listdir(fds)}


def wait_counting(g, snap):
    g.wait_for(r"(COUNTER \d+\r?\n(.|\n)*){3}", timeout=120)
    after = counters(g.text())
    assert_consecutive(after)
    assert after[0] > counters(snap["before"])[-1] - 2


# ---- secrets ----

def test_snapshot_file_is_private(snap):
    assert stat.S_IMODE(os.stat(snap["path"]).st_mode) == 0o600


def test_password_never_reaches_the_file(snap):
    with open(snap["path"], "rb") as f:
        assert PASSWORD.encode() not in f.read()
    _, records = snapshot_file.read(snap["path"])
    rec = {r["name"]: r for r in records}
    config = rec["manifest"]["payload"]["config"]
    assert "pci.0.6.0.password" not in config
    assert config["pci.0.6.0.unix"] == str(snap["vnc"])
    # What was left out is recorded, in a mandatory record: an older hyve refuses the file
    # rather than restore a VNC server without its password.
    assert rec["config.omitted"]["payload"] == {"pci.0.6.0.password": "secret"}
    assert rec["config.omitted"]["flags"] & snapshot_file.OPTIONAL == 0


def test_snapshot_info_does_not_show_the_password(snap):
    r = subprocess.run([str(HYVECTL), "snapshot-info", snap["path"]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout
    assert '"config.omitted"' in r.stdout


def test_print_config_does_not_show_the_password(snap):
    r = run_hyve(["-r", snap["path"], "-o", "pci.0.6.0.password=n3wpass", "--print-config"])
    assert r.returncode == 0, r.stderr
    assert "n3wpass" not in r.stdout + r.stderr
    assert "# pci.0.6.0.password=<secret, not shown>" in r.stdout.splitlines()
    r = run_hyve(["-s", f"6,fbuf,unix=/tmp/x.sock,password={PASSWORD}", "--print-config", "vm"])
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout
    assert "# pci.0.6.0.password=<secret, not shown>" in r.stdout.splitlines()


def test_restore_asks_for_the_password_again(snap):
    refused(["-r", snap["path"], "-l", "com1,stdio", "-o", "control.socket=off", "trust-nopw"],
            "pci.0.6.0.password was not saved in the snapshot", "-o pci.0.6.0.password=...")


def test_trusted_file_restores_as_before(snap):
    """The user's own file keeps its host bindings (disk, VNC socket); the password comes from the
    command line and VNC still asks for it."""
    name = "trust-own"
    g = Guest(["-r", snap["path"], "-l", "com1,stdio", "-o", f"control.socket={sock(name)}",
               "-o", f"pci.0.6.0.password={PASSWORD}", name])
    try:
        wait_counting(g, snap)
        assert str(snap["disk"]) in open_files(g)
        with pytest.raises(AuthFailed):
            RfbClient(str(snap["vnc"]), password="wrong")
        connect_after_backoff(str(snap["vnc"]), PASSWORD).close()
    finally:
        g.kill()


# ---- files that are not the user's own ----

BINDINGS = ("-o control.socket=...", "-o pci.0.4.0.path=...", "-o pci.0.6.0.unix=...", "-l com1,...")


def test_group_writable_file_is_refused(snap):
    path = variant(snap, "group-writable.snap", mode=0o620)
    line = refused(["-r", path, "-o", f"pci.0.6.0.password={PASSWORD}", "trust-gw"],
                   f"snapshot {path}: the file is writable by its group (mode 0620)",
                   "host bindings are not used: give them on the command line", *BINDINGS)
    assert "boot.kernel" not in line  # a restore boots no kernel: nothing to give


def test_other_users_file_is_refused(snap):
    path = variant(snap, "nobody.snap", owner=NOBODY)
    refused(["-r", path, "-o", f"pci.0.6.0.password={PASSWORD}", "trust-nobody"],
            f"is owned by uid {NOBODY}, not by you", *BINDINGS)
    # Giving some of them is not enough.
    refused(["-r", path, "-l", "com1,stdio", "-o", "control.socket=off", "-o", f"pci.0.6.0.password={PASSWORD}",
             "trust-nobody"], "-o pci.0.4.0.path=...", "-o pci.0.6.0.unix=...")


def test_other_users_file_restores_with_the_command_lines_bindings(snap):
    path = variant(snap, "nobody-given.snap", owner=NOBODY)
    disk, vnc, name = snap["dir"] / "disk2.img", snap["dir"] / "vnc2.sock", "trust-given"
    disk.write_bytes(snap["disk"].read_bytes())
    g = Guest(["-r", path, "-l", "com1,stdio", "-o", f"control.socket={sock(name)}", "-o", f"pci.0.4.0.path={disk}",
               "-o", f"pci.0.6.0.unix={vnc}", "-o", f"pci.0.6.0.password={PASSWORD}", name])
    try:
        wait_counting(g, snap)
        files = open_files(g)
        assert str(disk) in files and str(snap["disk"]) not in files
        RfbClient(str(vnc), password=PASSWORD).close()
    finally:
        g.kill()


# ---- listeners ----

def with_config(**changes):
    def change(records):
        config = records[0]["payload"]["config"]
        for key, value in changes.items():
            key = key.replace("__", ".")
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
    return change


def test_serial_listener_beyond_loopback_is_refused(snap):
    path = crafted(snap, "serial-any.snap", with_config(lpc__com1__path="tcp=0.0.0.0:4444"))
    refused(["-r", path, "-o", "control.socket=off", "-o", f"pci.0.6.0.password={PASSWORD}", "trust-tcp"],
            "lpc.com1.path=tcp=0.0.0.0:4444 would listen on 0.0.0.0 without a password", "-l com1,...")
    # The same listener asked for on the command line is the user's choice.
    r = run_hyve(["-r", path, "-l", "com1,tcp=0.0.0.0:4444", "-o", f"pci.0.6.0.password={PASSWORD}",
                  "--print-config"])
    assert r.returncode == 0, r.stderr
    # On loopback it is fine.
    path = crafted(snap, "serial-lo.snap", with_config(lpc__com1__path="tcp=127.0.0.1:4444"))
    r = run_hyve(["-r", path, "-o", f"pci.0.6.0.password={PASSWORD}", "--print-config"])
    assert r.returncode == 0, r.stderr


def test_vnc_beyond_loopback_without_password_is_refused(snap):
    """A file that names an open VNC listener and no secret to ask for (as a hand-made one could)."""
    def change(records):
        with_config(pci__0__6__0__unix=None, pci__0__6__0__tcp="0.0.0.0:5999")(records)
        return [r for r in records if r["name"] != "config.omitted"]
    path = crafted(snap, "vnc-any.snap", change)
    refused(["-r", path, "-o", "control.socket=off", "-l", "com1,stdio", "trust-vnc"],
            "pci.0.6.0.tcp=0.0.0.0:5999 would listen on 0.0.0.0 without a password")
    r = run_hyve(["-r", path, "-o", f"pci.0.6.0.password={PASSWORD}", "--print-config"])
    assert r.returncode == 0, r.stderr


def test_password_in_a_1_0_file_is_not_shown(snap):
    """A file written before secrets were left out holds the password in its configuration: it
    still restores (the user's own file), and neither snapshot-info nor --print-config shows it."""
    def change(records):
        with_config(pci__0__6__0__password="0ldpass")(records)
        return [r for r in records if r["name"] != "config.omitted"]
    path = crafted(snap, "format-1.0.snap", change)
    r = subprocess.run([str(HYVECTL), "snapshot-info", path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "0ldpass" not in r.stdout
    assert json.loads(r.stdout)["manifest"]["config"]["pci.0.6.0.password"] == "<secret, not shown>"
    r = run_hyve(["-r", path, "--print-config"])
    assert r.returncode == 0, r.stderr
    assert "0ldpass" not in r.stdout
    assert "# pci.0.6.0.password=<secret, not shown>" in r.stdout.splitlines()
    # Not the user's own: the password is a host binding like the others.
    os.chown(path, NOBODY, -1)
    refused(["-r", path, "--print-config"], "-o pci.0.6.0.password=...")
