"""virtio-net on a host tap: the guest gets the configured MAC, pings the host
and is pinged back, and a file crosses TCP both ways with matching
checksums. A missing tap or a bad MAC ends hyve with status 4 and one line."""
import hashlib
import os
import shutil
import socket
import subprocess
import threading

import pytest

from conftest import KERNEL, run_hyve

POWERED_OFF = 1
TAP = "hyvetap0"
HOST_IP = "10.77.0.1"
GUEST_IP = "10.77.0.2"
MAC = "02:11:22:33:44:55"


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def tap():
    ip("link", "del", TAP, check=False)
    ip("tuntap", "add", TAP, "mode", "tap")
    ip("addr", "add", f"{HOST_IP}/24", "dev", TAP)
    ip("link", "set", TAP, "up")
    yield TAP
    ip("link", "del", TAP, check=False)


def guest_ok(g, cmd, timeout=120):
    rc, out = g.run(cmd, timeout=timeout)
    assert rc == 0, f"{cmd!r} failed ({rc}): {out}"
    return out


@pytest.mark.xfail(run=False, reason="known bug (issue 3 stays open): a 3 MiB TCP transfer through virtio-net "
                   "stalled the whole test host for over 10 minutes in one run; not run until fixed")
def test_ping_and_tcp_both_ways(boot, tap):
    g = boot("cmd", extra_args=["-s", f"5,virtio-net,tap={tap},mac={MAC}"])
    g.wait_for("HYVE-CMD-READY", timeout=240)
    ifname = guest_ok(g, "ls /sys/class/net | grep -v '^lo$' | head -n1").strip()
    assert ifname, "no network interface in the guest"
    assert guest_ok(g, f"cat /sys/class/net/{ifname}/address").strip() == MAC
    guest_ok(g, f"ip link set {ifname} up && ip addr add {GUEST_IP}/24 dev {ifname}")

    # ICMP both ways.
    out = guest_ok(g, f"ping -c 3 -W 5 {HOST_IP}", timeout=60)
    assert " 0% packet loss" in out, out
    ping = [shutil.which("ping")] if shutil.which("ping") else ["busybox", "ping"]
    r = subprocess.run([*ping, "-c", "3", "-W", "5", GUEST_IP], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout + r.stderr

    # Guest -> host over TCP.
    out_len = 3 << 20
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST_IP, 0))
    srv.listen(1)
    srv.settimeout(120)
    port = srv.getsockname()[1]
    received = bytearray()

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(120)
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                received.extend(chunk)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    guest_ok(g, f"dd if=/dev/urandom of=/tmp/out.bin bs=64k count={out_len >> 16} 2>/dev/null")
    guest_sum = guest_ok(g, "sha256sum /tmp/out.bin").split()[0]
    guest_ok(g, f"nc {HOST_IP} {port} < /tmp/out.bin", timeout=180)
    t.join(180)
    srv.close()
    assert hashlib.sha256(received).hexdigest() == guest_sum
    assert len(received) == out_len

    # Host -> guest over TCP: the guest listens, the host connects and sends.
    g.send("nc -l -p 5001 > /tmp/in.bin; echo NC-DONE\n")
    data = os.urandom(2 << 20)
    for attempt in range(50):
        try:
            c = socket.create_connection((GUEST_IP, 5001), timeout=5)
            break
        except OSError:
            threading.Event().wait(0.5)
    else:
        pytest.fail("the guest's nc never listened")
    with c:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
    g.wait_for("NC-DONE", timeout=120)
    out = guest_ok(g, "sha256sum /tmp/in.bin")
    assert out.split()[0] == hashlib.sha256(data).hexdigest()

    # Offloads were negotiated through the tap (checksum and TSO towards the guest).
    feats = guest_ok(g, f"cat /sys/class/net/{ifname}/device/features").strip()
    assert feats[0] == "1" and feats[1] == "1", feats  # CSUM, GUEST_CSUM
    g.send("poweroff -f\n")
    assert g.wait_exit(60) == POWERED_OFF
    assert "needs a reset" not in g.stderr.decode(errors="replace")


def test_missing_tap_exits_4():
    r = run_hyve(["-s", "5,virtio-net,tap=hyvenosuch0", "--kernel", KERNEL, "bad"])
    assert r.returncode == 4
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "hyvenosuch0" in lines[0], r.stderr


def test_bad_mac_exits_4(tap):
    r = run_hyve(["-s", f"5,virtio-net,tap={tap},mac=01:00:5e:00:00:01", "--kernel", KERNEL, "bad"])
    assert r.returncode == 4
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "mac=" in lines[0], r.stderr
