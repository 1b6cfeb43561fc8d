"""Save and restore with a virtio disk: data written before the suspend and
after the restore are both in the image, and the file system is clean. The
disk is not copied into the snapshot; its identity is recorded, and a restore
warns when the image changed."""
import os

from conftest import Guest, boot_args
from test_snapshot import POWERED_OFF, hyvectl, sock
from test_virtio_blk import debugfs_cat, e2fsck, make_ext4


def test_disk_pattern_before_and_after_restore(tmp_path):
    img, snap = tmp_path / "disk.img", tmp_path / "disk.snap"
    make_ext4(img)
    g = Guest(boot_args("cmd", extra_args=["-s", f"4,virtio-blk,{img}", "-o", f"control.socket={sock('disk-src')}"])[:-1]
              + ["disk-src"])
    g.wait_for("HYVE-CMD-READY", timeout=240)
    rc, out = g.run("mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && "
                    "yes before | head -c 1000000 > /mnt/before && sync && md5sum /mnt/before")
    assert rc == 0, out
    r = hyvectl("disk-src", f"--suspend={snap}")
    assert r.returncode == 0, r.stderr
    assert g.wait_exit(60) == POWERED_OFF

    _, records = __import__("snapshot_file").read(snap)
    blk = {r["name"]: r for r in records}["dev.pci.0.4.0"]["payload"]
    assert blk["disk"]["path"] == str(img) and blk["disk"]["size"] == os.path.getsize(img)

    r = Guest(["-r", snap, "-l", "com1,stdio", "-o", f"control.socket={sock('disk-dst')}", "disk-dst"])
    try:
        rc, out = r.run("md5sum /mnt/before && yes after | head -c 1000000 > /mnt/after && sync && "
                        "umount /mnt && echo unmounted")
        assert rc == 0 and "unmounted" in out, out
        r.send("poweroff -f\n")
        assert r.wait_exit(60) == POWERED_OFF
    finally:
        r.kill()
    check = e2fsck(img)
    assert check.returncode == 0, check.stdout + check.stderr
    assert debugfs_cat(img, "/before") == (b"before\n" * 142858)[:1000000]
    assert debugfs_cat(img, "/after") == (b"after\n" * 166667)[:1000000]


def test_restore_warns_when_disk_changed(tmp_path):
    img, snap = tmp_path / "disk.img", tmp_path / "disk.snap"
    make_ext4(img)
    g = Guest(boot_args("cmd", extra_args=["-s", f"4,virtio-blk,{img}", "-o", f"control.socket={sock('disk-w')}"])[:-1]
              + ["disk-w"])
    g.wait_for("HYVE-CMD-READY", timeout=240)
    assert hyvectl("disk-w", f"--suspend={snap}").returncode == 0
    assert g.wait_exit(60) == POWERED_OFF
    os.truncate(img, os.path.getsize(img) + (1 << 20))  # the image changed behind the snapshot's back
    r = Guest(["-r", snap, "-l", "com1,stdio", "-o", f"control.socket={sock('disk-w2')}", "disk-w2"])
    try:
        rc, out = r.run("echo alive")
        assert out.strip() == "alive"
        err = r.stderr.decode(errors="replace")
        assert "warning" in err and str(img) in err and "changed" in err, err
    finally:
        r.kill()
