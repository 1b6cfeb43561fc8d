"""virtio devices across suspend and restore: a guest with a virtio-blk disk
(writing to it at the moment of the snapshot) and a virtio-rnd is suspended
through the control socket and resumed from the file; its I/O completes, its
file system is consistent, the entropy device still works."""
import hashlib

from conftest import Guest, boot_args, hyvectl, sock
from test_virtio_blk import debugfs_cat, e2fsck, make_ext4

POWERED_OFF = 1


def guest_ok(g, cmd, timeout=180):
    rc, out = g.run(cmd, timeout=timeout)
    assert rc == 0, f"{cmd!r} failed ({rc}): {out}"
    return out


def test_blk_and_rnd_survive_suspend_restore(tmp_path):
    img = tmp_path / "disk.img"
    make_ext4(img)
    snap = tmp_path / "virtio.snap"
    name = "vsnap"
    devices = ["-s", f"4,virtio-blk,{img}", "-s", "5,virtio-rnd", "-o", f"control.socket={sock(name)}"]
    g = Guest(boot_args("cmd", extra_args=devices)[:-1] + [name])
    try:
        g.wait_for("HYVE-CMD-READY", timeout=240)
        guest_ok(g, "mount -t ext4 /dev/vda /mnt && echo before > /mnt/before.txt && sync")
        guest_ok(g, "dd if=/dev/urandom of=/tmp/src.bin bs=64k count=64 2>/dev/null")
        src_sum = guest_ok(g, "sha256sum /tmp/src.bin").split()[0]
        # A writer busy when the snapshot is taken: 1024 synchronous 4 KiB writes. It must have
        # started (its command line read from the serial port) before the snapshot: input still
        # queued on the host side is not part of the VM.
        mark = len(g.text())
        g.send("(echo WRITER-START; dd if=/tmp/src.bin of=/mnt/during.bin bs=4k oflag=direct conv=fsync "
               "2>/dev/null; echo WRITER-DONE rc=$?) &\n")
        g.wait_for("WRITER-START", timeout=60, start=mark)
        r = hyvectl(name, f"--suspend={snap}")
        assert r.returncode == 0, r.stderr
        assert g.wait_exit(120) == POWERED_OFF
    finally:
        g.kill()
    seen = len(g.text())

    g2 = Guest(["-r", snap, "-l", "com1,stdio", "-o", f"control.socket={sock(name)}", name])
    try:
        # The command loop runs on: the writer finishes in the restored VM.
        g2.send("\n")
        g2.wait_for(r"WRITER-DONE rc=0", timeout=300)
        assert guest_ok(g2, "sha256sum /mnt/during.bin").split()[0] == src_sum
        assert guest_ok(g2, "cat /mnt/before.txt").strip() == "before"
        guest_ok(g2, "echo after > /mnt/after.txt")
        out = guest_ok(g2, "dd if=/dev/hwrng bs=64 count=2 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'")
        assert len(bytes.fromhex(out.strip())) == 128
        guest_ok(g2, "umount /mnt")
        g2.send("poweroff -f\n")
        assert g2.wait_exit(120) == POWERED_OFF
        err = g2.stderr.decode(errors="replace")
        assert "needs a reset" not in err and "error" not in err.lower(), err
    finally:
        g2.kill()
    assert seen > 0
    fsck = e2fsck(img)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert debugfs_cat(img, "/before.txt") == b"before\n"
    assert debugfs_cat(img, "/after.txt") == b"after\n"
    assert hashlib.sha256(debugfs_cat(img, "/during.bin")).hexdigest() == src_sum
