"""virtio-blk: the guest uses a raw ext4 image made on the host; what it
writes and syncs is in the image (checked with e2fsprogs on the host), also
after SIGKILL right after fsync; read-only disks refuse writes and keep their
bytes; bad disk options end hyve with status 4 and one line."""
import hashlib
import re
import shutil
import signal
import subprocess

import pytest

from conftest import KERNEL, run_hyve

POWERED_OFF = 1
IMG_MB = 64


def _tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        pytest.fail(f"{name} (e2fsprogs) is needed on the host")
    return path


def make_ext4(path, mb=IMG_MB):
    with open(path, "wb") as f:
        f.truncate(mb << 20)
    subprocess.run([_tool("mkfs.ext4"), "-q", "-F", "-b", "4096", str(path)],
                   check=True, capture_output=True)


def debugfs_cat(img, name):
    r = subprocess.run([_tool("debugfs"), "-R", f"cat {name}", str(img)], capture_output=True, check=True)
    return r.stdout


def e2fsck(img, repair=False):
    return subprocess.run([_tool("e2fsck"), "-fy" if repair else "-fn", str(img)], capture_output=True, text=True)


def read_after_journal_replay(img, folder, name):
    """A file of an ext4 image that was never unmounted (its VMM killed): the journal is replayed on a
    copy in folder, which must then be consistent, and the file read from it."""
    copy = folder / "copy.img"
    shutil.copyfile(img, copy)
    fsck = e2fsck(copy, repair=True)
    assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr
    return debugfs_cat(copy, name)


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def disk_args(img, opts=""):
    return ["-s", f"4,virtio-blk,{img}{opts}"]


def start(boot, img, opts="", mem="256M"):
    g = boot("cmd", mem=mem, extra_args=disk_args(img, opts))
    g.wait_for("HYVE-CMD-READY", timeout=240)
    return g


def guest_ok(g, cmd, timeout=120):
    rc, out = g.run(cmd, timeout=timeout)
    assert rc == 0, f"{cmd!r} failed ({rc}): {out}"
    return out


def test_ext4_write_sync_poweroff(boot, tmp_path):
    img = tmp_path / "disk.img"
    make_ext4(img)
    g = start(boot, img)
    assert guest_ok(g, "cat /sys/block/vda/size").strip() == str((IMG_MB << 20) // 512)
    assert re.fullmatch(r"hyve-[0-9a-f]{15}", guest_ok(g, "cat /sys/block/vda/serial").strip())
    guest_ok(g, "mount -t ext4 /dev/vda /mnt")
    guest_ok(g, "echo hello-from-the-guest > /mnt/hello.txt")
    guest_ok(g, "mkdir /mnt/dir && dd if=/dev/urandom of=/mnt/dir/rand.bin bs=64k count=48 2>/dev/null")
    guest_sum = guest_ok(g, "sha256sum /mnt/dir/rand.bin").split()[0]
    # Read back through the page cache of a fresh mount, too.
    guest_ok(g, "sync && umount /mnt && mount -t ext4 /dev/vda /mnt")
    assert guest_ok(g, "sha256sum /mnt/dir/rand.bin").split()[0] == guest_sum
    guest_ok(g, "umount /mnt")
    g.send("poweroff -f\n")
    assert g.wait_exit(60) == POWERED_OFF
    assert "error" not in g.stderr.decode(errors="replace").lower()

    fsck = e2fsck(img)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert debugfs_cat(img, "/hello.txt") == b"hello-from-the-guest\n"
    assert hashlib.sha256(debugfs_cat(img, "/dir/rand.bin")).hexdigest() == guest_sum


def test_sigkill_after_fsync_keeps_data(boot, tmp_path):
    img = tmp_path / "disk.img"
    make_ext4(img)
    g = start(boot, img)
    guest_ok(g, "mount -t ext4 /dev/vda /mnt")
    guest_ok(g, "dd if=/dev/urandom of=/tmp/src.bin bs=64k count=16 2>/dev/null")
    guest_sum = guest_ok(g, "sha256sum /tmp/src.bin").split()[0]
    # dd's conv=fsync: the file's data and metadata are durable when dd returns.
    guest_ok(g, "dd if=/tmp/src.bin of=/mnt/durable.bin bs=64k conv=fsync 2>/dev/null && echo FSYNC-RETURNED")
    g.proc.send_signal(signal.SIGKILL)
    g.proc.wait(30)

    assert hashlib.sha256(read_after_journal_replay(img, tmp_path, "/durable.bin")).hexdigest() == guest_sum


def test_read_only_disk(boot, tmp_path):
    img = tmp_path / "disk.img"
    make_ext4(img)
    before = sha256_file(img)
    g = start(boot, img, ",ro")
    assert guest_ok(g, "cat /sys/block/vda/ro").strip() == "1"
    # Mounting read-write is refused or falls back to read-only; writes fail either way.
    g.run("mount -t ext4 /dev/vda /mnt || mount -t ext4 -o ro /dev/vda /mnt")
    guest_ok(g, "grep -q ' /mnt ' /proc/mounts")
    rc, out = g.run("echo x > /mnt/new.txt")
    assert rc != 0 and "Read-only file system" in out, out
    guest_ok(g, "umount /mnt")
    # Past the guest's own read-only check, the device itself fails writes with an I/O error.
    guest_ok(g, "blockdev --setrw /dev/vda")
    rc, out = g.run("dd if=/dev/zero of=/dev/vda bs=4096 count=4 oflag=direct conv=fsync")
    assert rc != 0, out
    rc, out = g.run("dd if=/dev/vda bs=4096 count=4 iflag=direct 2>/dev/null | od -An -v -tx1 | head -c 64")
    assert rc == 0
    g.send("poweroff -f\n")
    assert g.wait_exit(60) == POWERED_OFF
    assert sha256_file(img) == before
    fsck = e2fsck(img)
    assert fsck.returncode == 0, fsck.stdout


@pytest.mark.parametrize("cache", ["", ",nocache"])
def test_sectorsize_serial_discard(boot, tmp_path, cache):
    """Raw block access; with nocache the O_DIRECT path (or its fallback where the file system has none)."""
    img = tmp_path / "raw.img"
    pattern = bytes(range(256)) * 4096 * 4  # 4 MiB, nonzero everywhere but every 256th byte
    img.write_bytes(pattern)
    g = start(boot, img, ",sectorsize=4096,serial=HYVE-SERIAL-1" + cache)
    assert guest_ok(g, "cat /sys/block/vda/queue/logical_block_size").strip() == "4096"
    assert guest_ok(g, "cat /sys/block/vda/serial").strip() == "HYVE-SERIAL-1"
    assert guest_ok(g, "cat /sys/block/vda/size").strip() == str(len(pattern) // 512)
    # Raw reads see the host's bytes.
    out = guest_ok(g, "dd if=/dev/vda bs=4096 skip=3 count=1 iflag=direct 2>/dev/null | sha256sum")
    assert out.split()[0] == hashlib.sha256(pattern[3 * 4096:4 * 4096]).hexdigest()
    # Raw writes land at the right place.
    guest_ok(g, "printf 'ABCDEFGH%.0s' $(seq 512) > /tmp/blk && "
                "dd if=/tmp/blk of=/dev/vda bs=4096 seek=300 count=1 oflag=direct conv=fsync 2>/dev/null")
    # Discard of the first MiB: the host image reads zeroes there afterwards.
    guest_ok(g, "blkdiscard -o 0 -l 1048576 /dev/vda")
    guest_ok(g, "sync")
    g.send("poweroff -f\n")
    assert g.wait_exit(60) == POWERED_OFF
    data = img.read_bytes()
    assert len(data) == len(pattern)
    assert data[300 * 4096:301 * 4096] == b"ABCDEFGH" * 512
    assert data[:1 << 20] == bytes(1 << 20)
    assert data[1 << 20:300 * 4096] == pattern[1 << 20:300 * 4096]
    assert data[301 * 4096:] == pattern[301 * 4096:]


@pytest.mark.parametrize("opts, message", [
    ("{missing}", "cannot open disk image {missing}"),
    ("{dir}", "{dir} is a directory"),
    ("{img},sectorsize=1000", "sectorsize=1000"),
    ("{img},serial=this-serial-is-far-too-long", "serial"),
])
def test_bad_disk_options_exit_4(tmp_path, opts, message):
    img = tmp_path / "ok.img"
    img.write_bytes(bytes(1 << 20))
    names = {"missing": tmp_path / "missing.img", "dir": tmp_path, "img": img}
    r = run_hyve(["-s", "4,virtio-blk," + opts.format(**names), "--kernel", KERNEL, "bad"])
    assert r.returncode == 4, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert message.format(**names) in lines[0]


def test_missing_path_exits_4():
    r = run_hyve(["-s", "4,virtio-blk", "--kernel", KERNEL, "bad"])
    assert r.returncode == 4
    assert len(r.stderr.strip().splitlines()) == 1 and "disk image" in r.stderr
