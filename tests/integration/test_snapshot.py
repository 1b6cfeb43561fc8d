"""Save and restore: checkpoint and suspend a running guest through the
control socket, resume it from the file alone, and check what the file
holds with an independent decoder."""
import os
import re
import subprocess
import time

import pytest

from conftest import HYVECTL, Guest, boot_args, hyvectl, sock
import snapshot_file

POWERED_OFF = 1
ERROR = 4


def counters(text):
    return [int(n) for n in re.findall(r"COUNTER (\d+)\r?\n", text)]


def assert_consecutive(values):
    assert values, "no counter output"
    assert values == list(range(values[0], values[0] + len(values))), values


def start_counter(name, cpus=1, mem="256M"):
    g = Guest(boot_args("counter", cpus=cpus, mem=mem, extra_args=["-o", f"control.socket={sock(name)}"])[:-1]
              + [name])
    g.wait_for(r"COUNTER 5\r?\n", timeout=180)
    return g


def restore(path, name, *extra):
    return Guest(["-r", path, "-l", "com1,stdio", "-o", f"control.socket={sock(name)}", *extra, name])


@pytest.fixture(scope="module")
def suspended(tmp_path_factory):
    """A 2-vCPU counter guest, checkpointed while running and then suspended."""
    d = tmp_path_factory.mktemp("snap")
    g = start_counter("snap-src", cpus=2)
    r = hyvectl("snap-src", f"--checkpoint={d / 'checkpoint.snap'}")
    assert r.returncode == 0, r.stderr
    g.wait_for(r"COUNTER 12\r?\n", timeout=60)  # still running after the checkpoint
    r = hyvectl("snap-src", f"--suspend={d / 'suspend.snap'}")
    assert r.returncode == 0, r.stderr
    assert g.wait_exit(60) == POWERED_OFF
    yield dict(dir=d, checkpoint=d / "checkpoint.snap", path=d / "suspend.snap", before=g.text())


def test_suspend_leaves_a_complete_file(suspended):
    header, records = snapshot_file.read(suspended["path"])
    assert (header["major"], header["minor"], header["page_size"]) == (1, 1, 4096)
    names = [r["name"] for r in records]
    assert names[0] == "manifest" and names[-1] == "end"
    for expected in ("vcpu.0", "vcpu.1", "vm.irqchip", "vm.pit", "vm.clock", "ram.0", "dev.lpc.com1", "dev.lpc.rtc"):
        assert expected in names
    assert not [f for f in os.listdir(suspended["dir"]) if f.startswith(".hyve-snapshot")]


def test_independent_decoder_reads_named_fields(suspended):
    _, records = snapshot_file.read(suspended["path"])
    rec = {r["name"]: r for r in records}
    m = rec["manifest"]["payload"]
    assert m["vcpus"] == 2
    assert m["config"]["name"] == "snap-src"
    assert m["config"]["platform.layout"] == "q35"  # recorded, so the restore uses the same memory map
    assert m["memory"]["size"] == 256 << 20
    assert m["memory"]["regions"]["ram.0"] == {"gpa": 0, "size": 256 << 20}
    assert m["cpu"]["vendor"] in ("AuthenticAMD", "GenuineIntel")
    assert "0x00000001.0" in m["cpu"]["cpuid"]
    assert m["devices"]["lpc.com1"]["model"] == "uart"
    v0 = rec["vcpu.0"]["payload"]
    assert v0["regs"]["rip"] > 0xffffffff80000000  # in the kernel, 64-bit
    assert v0["sregs"]["efer"] & 0x500 == 0x500    # long mode enabled and active
    assert "0x00000010" in v0["msrs"]              # the TSC
    assert len(v0["lapic"]) == 1024 and len(v0["xsave"]) == 4096
    assert v0["sregs"]["cs"]["l"] == 1
    assert rec["vm.clock"]["payload"]["clock"] > 0
    assert set(rec["vm.irqchip"]["payload"]) >= {"pic-master", "pic-slave", "ioapic"}
    uart = rec["dev.lpc.com1"]["payload"]
    assert {"ier", "lcr", "mcr", "rx_fifo"} <= set(uart)
    assert rec["ram.0"]["length"] == 256 << 20


def test_ram_is_sparse(suspended):
    st = os.stat(suspended["path"])
    # Zero pages are holes: the file occupies far less than the guest's 256 MiB.
    assert st.st_blocks * 512 < 160 << 20, st.st_blocks * 512
    assert st.st_size > 256 << 20


def test_snapshot_info(suspended):
    r = subprocess.run([str(HYVECTL), "snapshot-info", suspended["path"]], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json
    info = json.loads(r.stdout)
    assert info["header"]["major"] == 1
    assert info["manifest"]["vcpus"] == 2
    assert all(rec["checksum_status"] == "ok" for rec in info["records"])
    assert {rec["name"] for rec in info["records"]} >= {"manifest", "vcpu.0", "ram.0", "end"}


@pytest.mark.parametrize("eager", [False, True], ids=["lazy", "eager"])
def test_restore_continues_counter(suspended, eager):
    g = restore(suspended["path"], f"snap-r-{int(eager)}", *(["--eager"] if eager else []))
    try:
        g.wait_for(r"COUNTER \d+\r?\n(.|\n)*COUNTER \d+\r?\n(.|\n)*COUNTER \d+\r?\n", timeout=60)
        before, after = counters(suspended["before"]), counters(g.text())
        assert_consecutive(before)
        assert_consecutive(after)
        # The restored guest resumes right after the last value printed before the suspend
        # (or one later, when the suspend fell in the middle of a line).
        assert after[0] in (before[-1] + 1, before[-1] + 2), (before[-5:], after[:5])
    finally:
        g.kill()


def test_restore_twice_gives_two_guests(suspended):
    a = restore(suspended["path"], "snap-twice-a")
    b = restore(suspended["path"], "snap-twice-b")
    try:
        for g in (a, b):
            g.wait_for(r"(COUNTER \d+\r?\n(.|\n)*){3}", timeout=60)
            assert_consecutive(counters(g.text()))
        assert counters(a.text())[0] == counters(b.text())[0]
    finally:
        a.kill()
        b.kill()


def test_checkpoint_restores_too(suspended):
    g = restore(suspended["checkpoint"], "snap-ckpt")
    try:
        g.wait_for(r"(COUNTER \d+\r?\n(.|\n)*){3}", timeout=60)
        after = counters(g.text())
        assert_consecutive(after)
        assert after[0] < counters(suspended["before"])[-1]
        r = hyvectl("snap-ckpt", "status")
        assert r.returncode == 0 and "running" in r.stdout
    finally:
        g.kill()


def test_serial_works_after_restore(tmp_path):
    g = Guest(boot_args("cmd", cpus=1, extra_args=["-o", f"control.socket={sock('snap-cmd')}"])[:-1] + ["snap-cmd"])
    g.wait_for("HYVE-CMD-READY", timeout=180)
    g.run("echo before > /tmp/marker")
    assert hyvectl("snap-cmd", f"--suspend={tmp_path / 'cmd.snap'}").returncode == 0
    assert g.wait_exit(60) == POWERED_OFF
    r = restore(tmp_path / "cmd.snap", "snap-cmd2")
    try:
        rc, out = r.run("cat /tmp/marker; echo after-$((40+2))", timeout=60)
        assert out.split() == ["before", "after-42"]
        r.send("poweroff -f\n")
        assert r.wait_exit(60) == POWERED_OFF
    finally:
        r.kill()


def test_override_serial_backend_on_restore(suspended, tmp_path):
    log = tmp_path / "com1.log"
    g = Guest(["-r", suspended["path"], "-l", f"com1,file={log}", "-o", f"control.socket={sock('snap-file')}",
               "snap-file"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(counters(log.read_text() if log.exists() else "")) < 3:
            time.sleep(0.5)
        assert_consecutive(counters(log.read_text()))
    finally:
        g.kill()


# ---- live snapshots ----

def control_request(name, request, timeout=300):
    """Sends one request to the VM's control socket; returns the reply."""
    import json
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock(name))
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, "the VM closed the connection before it replied"
            data += chunk
    return json.loads(data)


def check_live(reply, g):
    assert reply.get("ok"), (reply, g.stderr.decode(errors="replace"))
    live = reply["live"]
    assert live["passes"] >= 1 and len(live["pass_bytes"]) == live["passes"], live
    assert live["pass_bytes"][0] > 0, live  # the first pass wrote the touched RAM
    assert 0 < live["pause_ms"] <= live["total_ms"], live
    return reply


def live_reply(g, name, path, *flags):
    """Takes a live snapshot of guest g with hyvectl; returns the reply."""
    import json
    r = hyvectl(name, "--json", "snapshot", path, "--live", *flags)
    assert r.returncode == 0, r.stdout + r.stderr + g.stderr.decode(errors="replace")
    return check_live(json.loads(r.stdout), g)


def guest_ok(g, cmd, timeout=120):
    rc, out = g.run(cmd, timeout=timeout)
    assert rc == 0, f"{cmd!r} failed ({rc}): {out}"
    return out


def read_counter(g):
    """The guest's counter file; it is empty between the shell's truncation and its write, so read again."""
    return int(guest_ok(g, 'while :; do c=$(cat /tmp/counter); [ -n "$c" ] && break; done; echo $c'))


def test_live_snapshot_of_a_busy_guest(tmp_path):
    """A guest counting in a tmpfs file, rewriting 16 MiB of memory in a loop and reading two disks
    in turn over and over (virtio-blk DMA into guest RAM, which KVM's dirty log does not see) is
    snapshot live; the file restores to a guest that counts on from where it was and whose cached
    disk pages hold what the disks hold. The guest's kernel does not zero pages it allocates
    (init_on_alloc=0), so a page cache page is written by the disk's DMA alone: one the snapshot
    did not copy again after its DMA would hold another block's data."""
    import hashlib
    import json
    disks = [tmp_path / "a.img", tmp_path / "b.img"]
    sums = []
    for d in disks:
        d.write_bytes(os.urandom(16 << 20))
        sums.append(hashlib.sha256(d.read_bytes()).hexdigest())
    snap = tmp_path / "live.snap"
    name = "snap-live"
    g = Guest(boot_args("cmd", cpus=2, extra_cmdline="init_on_alloc=0",
                        extra_args=["-s", f"4,virtio-blk,{disks[0]}", "-s", f"5,virtio-blk,{disks[1]}",
                                    "-o", "log.level=info", "-o", f"control.socket={sock(name)}"])[:-1] + [name])
    try:
        g.wait_for("HYVE-CMD-READY", timeout=240)
        guest_ok(g, "dd if=/dev/urandom of=/tmp/src bs=1M count=16 2>/dev/null")
        guest_ok(g, "(n=0; while :; do n=$((n+1)); echo $n > /tmp/counter; done) >/dev/null 2>&1 &"
                    " echo $! > /tmp/pid.counter")
        guest_ok(g, "(while :; do dd if=/tmp/src of=/tmp/dirty bs=1M conv=notrunc 2>/dev/null; done)"
                    " >/dev/null 2>&1 & echo $! > /tmp/pid.dirty")
        guest_ok(g, "(while :; do for d in vda vdb; do echo 1 > /proc/sys/vm/drop_caches; cat /dev/$d > /dev/null;"
                    " done; done) >/dev/null 2>&1 & echo $! > /tmp/pid.dma")
        before = read_counter(g)
        # verify: in the pause, hyve compares all of RAM with the file, so a page written after its
        # last copy that the dirty tracking missed fails the snapshot, whatever the guest does later.
        reply = check_live(control_request(name, {"cmd": "snapshot", "path": str(snap), "live": True,
                                                  "verify": True}), g)
        print("live snapshot reply:", reply)
        assert reply["state"] == "running"
        # It runs on after the snapshot, and status keeps the report.
        assert read_counter(g) > before
        st = json.loads(hyvectl(name, "--json", "status").stdout)
        assert st["state"] == "running" and st["live_snapshot"]["passes"] == reply["live"]["passes"]
        assert re.search(r"live snapshot .*: \d+ passes while running .*, pause [0-9.]+ ms",
                         g.stderr.decode(errors="replace"))
        assert hyvectl(name, "quit").returncode == 0
        g.wait_exit(60)
    finally:
        g.kill()

    info = subprocess.run([str(HYVECTL), "snapshot-info", snap], capture_output=True, text=True, timeout=120)
    assert info.returncode == 0, info.stderr
    records = json.loads(info.stdout)["records"]
    assert all(rec["checksum_status"] == "ok" for rec in records)
    names = [rec["name"] for rec in records]
    assert names[0] == "manifest" and names[-1] == "end" and {"ram.0", "vcpu.0", "vcpu.1", "dev.pci.0.4.0"} <= set(names)

    r = restore(snap, "snap-live-r")
    try:
        # The loops stop first, so nothing drops the page cache the snapshot brought back.
        guest_ok(r, "kill $(cat /tmp/pid.dirty) $(cat /tmp/pid.dma)")
        restored = read_counter(r)
        assert restored >= before, (before, restored)
        assert read_counter(r) > restored  # and counts on
        # Pages the disks' DMA filled while RAM was being written are the disks'.
        assert guest_ok(r, "sha256sum /dev/vda /dev/vdb").split()[::2] == sums
        # Memory the vCPUs rewrote throughout is what they wrote.
        guest_ok(r, "head -c $(wc -c < /tmp/dirty) /tmp/src | cmp - /tmp/dirty")
        r.send("poweroff -f\n")
        assert r.wait_exit(60) == POWERED_OFF
    finally:
        r.kill()


def test_live_snapshot_then_exit(tmp_path):
    """--live --exit: the pause is the end; the restored guest counts on without a gap."""
    g = start_counter("snap-live-exit")
    try:
        reply = live_reply(g, "snap-live-exit", tmp_path / "live-exit.snap", "--exit")
        assert reply["state"] == "exiting"
        assert g.wait_exit(60) == POWERED_OFF
    finally:
        g.kill()
    r = restore(tmp_path / "live-exit.snap", "snap-live-exit-r")
    try:
        r.wait_for(r"(COUNTER \d+\r?\n(.|\n)*){3}", timeout=60)
        before, after = counters(g.text()), counters(r.text())
        assert_consecutive(before)
        assert_consecutive(after)
        assert after[0] in (before[-1] + 1, before[-1] + 2), (before[-5:], after[:5])
    finally:
        r.kill()
