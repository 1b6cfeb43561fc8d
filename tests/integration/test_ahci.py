"""AHCI (src/sata): Linux's ahci driver finds SATA disks and ATAPI CD-ROMs given in bhyve's forms
(`ahci,hd:IMG,cd:ISO`, `ahci-hd`, `ahci-cd`), with the sizes, serials and sector sizes asked for.
What the guest writes to an ext4 file system on the disk and syncs is in the image (e2fsprogs on
the host), also after SIGKILL right after fsync; TRIM punches holes into the image; a read-only
disk fails writes and keeps its bytes. A CD holds an ISO made on the host whose files read back
identical; discs inserted and ejected through the control socket are seen by the guest. A snapshot
taken during a long write restores to a VM whose write completes. OVMF boots a UEFI ISO from an
ahci-cd to GRUB's menu and on into Linux. Bad options end hyve with status 4 and one line."""
import ctypes
import ctypes.util
import hashlib
import os
import pathlib
import random
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import KERNEL, RUNDIR, Guest, boot_args, hyvectl, run_hyve, sock
from test_uefi_iso import iso  # noqa: F401 (the UEFI ISO fixture, used by the last test)
from test_uefi_iso import CMDLINE, CODE, ENTRY, FIRMWARE_TIMEOUT, LINUX_TIMEOUT, VARS, screenshot_until_menu, vnc_path
from test_virtio_blk import debugfs_cat, e2fsck, make_ext4, read_after_journal_replay, sha256_file

POWERED_OFF = 1
IMG_MB = 64
SECTOR = 512
CD_BLOCK = 2048
ATA_SERIAL_MAX = 20   # IDENTIFY words 10-19
# Guest-side waits poll every 0.1 s; these bound a broken run, a passing one never waits them out.
DEVICE_TIMEOUT = 60
MEDIA_TIMEOUT = 120


def guest_ok(g, cmd, timeout=120):
    rc, out = g.run(cmd, timeout=timeout)
    assert rc == 0, f"{cmd!r} failed ({rc}): {out}"
    return out


def guest_until(g, condition, what, timeout=DEVICE_TIMEOUT):
    """Polls a shell condition in the guest until it holds; fails naming what it waited for."""
    tries = timeout * 10
    rc, out = g.run(f"i=0; until {condition}; do i=$((i+1)); [ $i -ge {tries} ] && exit 1; usleep 100000; done",
                    timeout=timeout + 60)
    assert rc == 0, f"the guest never saw {what} within {timeout} s: {out}"


def block_device(g, slot, prefix):
    """The name of the block device (sdX, srN) Linux made for the AHCI controller in PCI slot slot,
    waiting for the driver's scan to reach it."""
    find = (f"for d in /sys/block/{prefix}*; do readlink -f $d | grep -q '/0000:00:{slot:02x}.0/' && "
            f"basename $d; done; true")
    guest_until(g, f'[ -n "$({find})" ]', f"a {prefix}* device on slot {slot}")
    names = guest_ok(g, find).split()
    assert len(names) == 1, f"expected one {prefix}* device on slot {slot}: {names}"
    return names[0]


def ata_port(g, dev):
    """The libata port (ataN) dev hangs off, and the IDENTIFY (PACKET) DEVICE words its device gave."""
    path = guest_ok(g, f"p=$(readlink -f /sys/block/{dev}/device); echo ${{p%%/host*}}").strip()
    words = [int(w, 16) for w in guest_ok(g, f"cat {path}/link*/dev*/ata_device/dev*/id").split()]
    assert len(words) == 256, words
    return os.path.basename(path), words


def id_string(words, first, last):
    """An IDENTIFY string: two characters per word, the first in the high byte."""
    return b"".join(bytes((w >> 8, w & 0xFF)) for w in words[first:last + 1]).decode("ascii").strip()


def id_lba48_sectors(words):
    return words[100] | words[101] << 16 | words[102] << 32 | words[103] << 48


def sysfs(g, dev, attr):
    return guest_ok(g, f"cat /sys/block/{dev}/{attr}").strip()


def tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        pytest.fail(f"{name} is needed on the host (scripts/install-deps)", pytrace=False)
    return path


def make_iso(path, label, files):
    """An ISO 9660 image (Rock Ridge names) labelled label holding files {relative name: bytes}."""
    tree = path.parent / (path.name + ".tree")
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    r = subprocess.run([tool("xorriso"), "-as", "mkisofs", "-R", "-V", label, "-o", str(path), str(tree)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert path.stat().st_size % CD_BLOCK == 0
    return path


def random_bytes(n, seed):
    return random.Random(seed).randbytes(n)


def read_label(device):
    """Shell: the ISO 9660 volume identifier (primary volume descriptor at block 16, bytes 40-71)."""
    return f"dd if={device} bs=2048 skip=16 count=1 2>/dev/null | tail -c +41 | head -c 32 | tr -d ' '"


def control(g, name, *args):
    """hyvectl ARGS on g's control socket, which must succeed."""
    r = hyvectl(name, *args)
    assert r.returncode == 0, (f"hyvectl {' '.join(map(str, args))}: status {r.returncode}, {r.stderr}"
                               f"hyve's status {g.proc.poll()}, stderr: {g.stderr.decode(errors='replace')}")


def power_off(g):
    g.send("poweroff -f\n")
    assert g.wait_exit(60) == POWERED_OFF
    err = g.stderr.decode(errors="replace")
    assert "error" not in err.lower(), err


# ---- one guest for detection, the CD's files and the read-only disk: none of them writes ----
# Slot 4: `ahci,hd:EXT4,cd:ISO` (ports 0 and 1); slot 6: `ahci-hd,RAW,ro`. The last test of the
# group writes to the ext4 disk and powers the guest off.

CD_FILES = {"big.bin": random_bytes(6 << 20, 1), "dir/small.txt": b"hyve ahci cd\n" * 100,
            "dir/odd.bin": random_bytes(CD_BLOCK * 3 + 5, 2)}
RO_PATTERN = random_bytes(2 << 20, 4)   # every block different: a read from the wrong place shows


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    d = tmp_path_factory.mktemp("ahci-shared")
    disk, ro_disk = d / "disk.img", d / "ro.img"
    make_ext4(disk)
    ro_disk.write_bytes(RO_PATTERN)
    cd = make_iso(d / "files.iso", "HYVE_FILES", CD_FILES)
    g = Guest(boot_args("cmd", extra_args=["-s", f"4,ahci,hd:{disk},cd:{cd}", "-s", f"6,ahci-hd,{ro_disk},ro"],
                        name="ahci-shared"))
    try:
        g.wait_for("HYVE-CMD-READY", timeout=240)
        g.paths = {"disk": disk, "ro": ro_disk, "cd": cd}
        g.devs = {"disk": block_device(g, 4, "sd"), "cd": block_device(g, 4, "sr"), "ro": block_device(g, 6, "sd")}
        yield g
    finally:
        g.kill()


def test_disk_and_cd_on_one_controller(shared):
    g = shared
    disk, cd = g.devs["disk"], g.devs["cd"]
    assert sysfs(g, disk, "size") == str((IMG_MB << 20) // SECTOR)
    assert sysfs(g, disk, "queue/logical_block_size") == str(SECTOR)
    assert sysfs(g, disk, "device/type") == "0"          # a direct-access (disk) SCSI device
    assert sysfs(g, disk, "device/vendor") == "ATA"      # through libata's SCSI translation
    disk_port, disk_id = ata_port(g, disk)
    assert id_lba48_sectors(disk_id) == (IMG_MB << 20) // SECTOR
    assert id_string(disk_id, 10, 19), "the disk has no serial number"
    assert id_string(disk_id, 27, 46), "the disk has no model"

    assert sysfs(g, cd, "size") == str(g.paths["cd"].stat().st_size // SECTOR)
    assert sysfs(g, cd, "queue/logical_block_size") == str(CD_BLOCK)
    assert sysfs(g, cd, "removable") == "1"
    assert sysfs(g, cd, "device/type") == "5"            # a CD/DVD device
    cd_port, cd_id = ata_port(g, cd)
    assert cd_id[0] >> 14 == 2 and (cd_id[0] >> 8) & 0x1F == 5, f"not an ATAPI CD-ROM: word 0 = {cd_id[0]:#06x}"
    # libata numbers a controller's ports in order: the disk is port 0, the CD-ROM port 1.
    assert int(disk_port[3:]) < int(cd_port[3:]), (disk_port, cd_port)
    assert guest_ok(g, read_label(f"/dev/{cd}")).strip() == "HYVE_FILES"


def test_cd_files_read_back(shared):
    g = shared
    guest_ok(g, f"mkdir -p /mnt/cd && mount -t iso9660 -o ro /dev/{g.devs['cd']} /mnt/cd")
    try:
        for name, data in CD_FILES.items():
            out = guest_ok(g, f"sha256sum /mnt/cd/{name}")
            assert out.split()[0] == hashlib.sha256(data).hexdigest(), name
        # The whole disc, read raw (no file system, no page cache), is the host's ISO.
        out = guest_ok(g, f"dd if=/dev/{g.devs['cd']} bs=64k iflag=direct 2>/dev/null | sha256sum")
        assert out.split()[0] == sha256_file(g.paths["cd"])
    finally:
        g.run("umount /mnt/cd")


def test_read_only_disk(shared):
    g = shared
    dev = g.devs["ro"]
    before = sha256_file(g.paths["ro"])
    out = guest_ok(g, f"dd if=/dev/{dev} bs=4096 skip=5 count=1 iflag=direct 2>/dev/null | sha256sum")
    assert out.split()[0] == hashlib.sha256(RO_PATTERN[5 * 4096:6 * 4096]).hexdigest()
    # ATA has no write-protect flag for Linux to show: the disk itself must fail the writes.
    guest_ok(g, f"blockdev --setrw /dev/{dev}")
    rc, out = g.run(f"dd if=/dev/zero of=/dev/{dev} bs=4096 count=4 oflag=direct conv=fsync")
    assert rc != 0, out
    rc, out = g.run(f"dd if=/dev/zero of=/dev/{dev} bs=4096 seek=100 count=1 conv=fsync")
    assert rc != 0, out
    # The failed writes changed nothing, seen from the guest and in the image.
    out = guest_ok(g, f"dd if=/dev/{dev} bs=4096 count=4 iflag=direct 2>/dev/null | sha256sum")
    assert out.split()[0] == hashlib.sha256(RO_PATTERN[:4 * 4096]).hexdigest()
    assert sha256_file(g.paths["ro"]) == before


def test_ext4_write_sync_poweroff(shared):
    """Last in the group: it powers the shared guest off."""
    g = shared
    dev = g.devs["disk"]
    guest_ok(g, f"mkdir -p /mnt/disk && mount -t ext4 /dev/{dev} /mnt/disk")
    guest_ok(g, "echo hello-from-sata > /mnt/disk/hello.txt")
    guest_ok(g, "mkdir /mnt/disk/dir && dd if=/dev/urandom of=/mnt/disk/dir/rand.bin bs=64k count=160 2>/dev/null")
    guest_sum = guest_ok(g, "sha256sum /mnt/disk/dir/rand.bin").split()[0]
    # Read back through a fresh mount, from the disk rather than the page cache.
    guest_ok(g, f"sync && umount /mnt/disk && echo 3 > /proc/sys/vm/drop_caches && "
                f"mount -t ext4 /dev/{dev} /mnt/disk")
    assert guest_ok(g, "sha256sum /mnt/disk/dir/rand.bin").split()[0] == guest_sum
    guest_ok(g, "umount /mnt/disk")
    power_off(g)

    img = g.paths["disk"]
    fsck = e2fsck(img)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert debugfs_cat(img, "/hello.txt") == b"hello-from-sata\n"
    assert hashlib.sha256(debugfs_cat(img, "/dir/rand.bin")).hexdigest() == guest_sum


# ---- single-device guests ----

def test_sigkill_after_fsync_keeps_data(boot, tmp_path):
    """ahci-hd with nocache: what fsync returned for is in the image even though hyve is killed."""
    img = tmp_path / "disk.img"
    make_ext4(img)
    g = boot("cmd", extra_args=["-s", f"4,ahci-hd,{img},nocache"], name="ahci-kill")
    g.wait_for("HYVE-CMD-READY", timeout=240)
    dev = block_device(g, 4, "sd")
    guest_ok(g, f"mount -t ext4 /dev/{dev} /mnt")
    guest_ok(g, "dd if=/dev/urandom of=/tmp/src.bin bs=64k count=64 2>/dev/null")
    guest_sum = guest_ok(g, "sha256sum /tmp/src.bin").split()[0]
    # dd's conv=fsync: the file's data and metadata are durable when dd returns (a FLUSH CACHE).
    guest_ok(g, "dd if=/tmp/src.bin of=/mnt/durable.bin bs=64k conv=fsync 2>/dev/null")
    g.proc.send_signal(signal.SIGKILL)
    g.proc.wait(30)

    assert hashlib.sha256(read_after_journal_replay(img, tmp_path, "/durable.bin")).hexdigest() == guest_sum


def punch_hole_problem(folder):
    """Why files in folder cannot have holes punched (the TRIM test needs it), or None."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    probe = folder / "punch-probe"
    probe.write_bytes(b"\xff" * (1 << 20))
    try:
        fd = os.open(probe, os.O_RDWR)
        try:
            falloc_fl_keep_size, falloc_fl_punch_hole = 1, 2
            if libc.fallocate(fd, falloc_fl_keep_size | falloc_fl_punch_hole, ctypes.c_long(0),
                              ctypes.c_long(1 << 19)) != 0:
                return f"fallocate(PUNCH_HOLE) in {folder}: {os.strerror(ctypes.get_errno())}"
            if os.lseek(fd, 0, os.SEEK_DATA) != 1 << 19:
                return f"{folder} does not report holes through SEEK_DATA"
        finally:
            os.close(fd)
    finally:
        probe.unlink()
    return None


@pytest.fixture
def run_folder():
    """A fresh folder under RUNDIR: a tmpfs in the test host, which punches holes (tmp_path is on 9p there)."""
    os.makedirs(RUNDIR, exist_ok=True)
    d = pathlib.Path(tempfile.mkdtemp(prefix="ahci-", dir=RUNDIR))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_sectorsize_serial_and_trim(boot, run_folder):
    """`ahci-hd,IMG,sectorsize=4096,ser=S`: Linux sees 4 KiB logical sectors and the serial; raw
    reads and writes land where they should; blkdiscard (ATA DATA SET MANAGEMENT, TRIM) makes holes
    in the image, which then reads zeroes."""
    problem = punch_hole_problem(run_folder)
    assert problem is None, problem
    img = run_folder / "raw.img"
    pattern = (bytes(range(1, 256)) * ((16 << 20) // 255 + 1))[:16 << 20]   # 16 MiB, no zero byte
    img.write_bytes(pattern)
    os.sync()
    blocks_before = img.stat().st_blocks
    assert blocks_before * 512 >= len(pattern), "the image must start fully allocated"
    serial = "HYVE-AHCI-SER-1"
    g = boot("cmd", extra_args=["-s", f"4,ahci-hd,{img},sectorsize=4096,ser={serial}"], name="ahci-trim")
    g.wait_for("HYVE-CMD-READY", timeout=240)
    dev = block_device(g, 4, "sd")
    assert sysfs(g, dev, "queue/logical_block_size") == "4096"
    assert sysfs(g, dev, "size") == str(len(pattern) // SECTOR)
    _, words = ata_port(g, dev)
    assert id_string(words, 10, 19) == serial
    assert int(sysfs(g, dev, "queue/discard_max_bytes")) > 0, "Linux did not enable discard (TRIM) on the disk"

    out = guest_ok(g, f"dd if=/dev/{dev} bs=4096 skip=3 count=1 iflag=direct 2>/dev/null | sha256sum")
    assert out.split()[0] == hashlib.sha256(pattern[3 * 4096:4 * 4096]).hexdigest()
    guest_ok(g, "printf 'ABCDEFGH%.0s' $(seq 512) > /tmp/blk && "
                f"dd if=/tmp/blk of=/dev/{dev} bs=4096 seek=3500 count=1 oflag=direct conv=fsync 2>/dev/null")
    trim_at, trim_len = 4 << 20, 8 << 20
    guest_ok(g, f"blkdiscard -o {trim_at} -l {trim_len} /dev/{dev} && sync")
    out = guest_ok(g, f"dd if=/dev/{dev} bs=1M skip=4 count=8 iflag=direct 2>/dev/null | sha256sum")
    assert out.split()[0] == hashlib.sha256(bytes(trim_len)).hexdigest(), "the trimmed range does not read zeroes"
    power_off(g)

    data = img.read_bytes()
    assert len(data) == len(pattern)
    assert data[3500 * 4096:3501 * 4096] == b"ABCDEFGH" * 512
    assert data[:trim_at] == pattern[:trim_at]
    assert data[trim_at:trim_at + trim_len] == bytes(trim_len)
    assert data[trim_at + trim_len:3500 * 4096] == pattern[trim_at + trim_len:3500 * 4096]
    assert data[3501 * 4096:] == pattern[3501 * 4096:]
    # The trimmed range is a hole now: no blocks behind it.
    with open(img, "rb") as f:
        assert os.lseek(f.fileno(), trim_at, os.SEEK_HOLE) == trim_at, "no hole where the guest trimmed"
        assert os.lseek(f.fileno(), trim_at, os.SEEK_DATA) == trim_at + trim_len
    freed = (blocks_before - img.stat().st_blocks) * 512
    assert freed >= trim_len, f"only {freed} bytes freed by trimming {trim_len}"


def test_cd_media_change(boot, tmp_path):
    """`ahci-cd,A.iso` in slot 5; hyvectl cd-insert and cd-eject on drive 5:0 while the guest watches:
    Linux learns of each change (unit attention, media events) and reads the new disc, or finds none.
    A disc the guest has mounted is locked in: changes are refused unless forced."""
    name = "ahci-media"
    pad = random_bytes(3 << 20, 3)
    disc_a = make_iso(tmp_path / "a.iso", "HYVE_DISC_A", {"which.txt": b"disc A\n", "pad.bin": pad})
    disc_b = make_iso(tmp_path / "b.iso", "HYVE_DISC_B", {"which.txt": b"disc B\n"})
    assert disc_a.stat().st_size != disc_b.stat().st_size
    g = boot("cmd", extra_args=["-s", f"5,ahci-cd,{disc_a}", "-o", f"control.socket={sock(name)}"], name=name)
    g.wait_for("HYVE-CMD-READY", timeout=240)
    cd = block_device(g, 5, "sr")
    # The kernel polls the drive for media events too (off by default, udisks would turn it on).
    guest_ok(g, f"echo 200 > /sys/block/{cd}/events_poll_msecs")
    assert guest_ok(g, read_label(f"/dev/{cd}")).strip() == "HYVE_DISC_A"

    def change(*args):
        control(g, name, *args)

    def wait_label(label):
        guest_until(g, f'[ "$({read_label(f"/dev/{cd}")})" = {label} ]', f"the disc labelled {label}", MEDIA_TIMEOUT)

    change("cd-insert", "5:0", disc_b)
    wait_label("HYVE_DISC_B")
    assert sysfs(g, cd, "size") == str(disc_b.stat().st_size // SECTOR)
    assert guest_ok(g, f"mount -t iso9660 -o ro /dev/{cd} /mnt && cat /mnt/which.txt && umount /mnt") == "disc B\n"

    change("cd-eject", "5:0")
    guest_until(g, f"dd if=/dev/{cd} bs=2048 count=1 of=/dev/null 2>&1 | grep -q 'No medium found'",
                "the empty tray", MEDIA_TIMEOUT)
    rc, out = g.run(f"mount -t iso9660 -o ro /dev/{cd} /mnt")
    assert rc != 0, out

    # From an empty tray to a disc again.
    change("cd-insert", "5:0", disc_a)
    wait_label("HYVE_DISC_A")
    assert sysfs(g, cd, "size") == str(disc_a.stat().st_size // SECTOR)
    guest_ok(g, f"mount -t iso9660 -o ro /dev/{cd} /mnt")
    # Mounted, the disc is locked in (PREVENT ALLOW MEDIUM REMOVAL): an eject is refused, and the
    # guest reads on.
    for refused in (("cd-eject", "5:0"), ("cd-insert", "5:0", disc_b)):
        r = hyvectl(name, *refused)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, (refused, r.returncode, r.stderr)
    assert guest_ok(g, "cat /mnt/which.txt") == "disc A\n"
    out = guest_ok(g, "sha256sum /mnt/pad.bin")
    assert out.split()[0] == hashlib.sha256(pad).hexdigest()
    # Unmounting unlocks the tray.
    guest_ok(g, "umount /mnt")
    change("cd-eject", "5:0")
    guest_until(g, f"dd if=/dev/{cd} bs=2048 count=1 of=/dev/null 2>&1 | grep -q 'No medium found'",
                "the empty tray after unmounting", MEDIA_TIMEOUT)

    # --force takes a locked disc out: the mounted file system's next read fails, it still unmounts.
    change("cd-insert", "5:0", disc_b)
    wait_label("HYVE_DISC_B")
    guest_ok(g, f"mount -t iso9660 -o ro /dev/{cd} /mnt")
    change("cd-eject", "5:0", "--force")
    rc, out = g.run("cat /mnt/which.txt")
    assert rc != 0, out
    guest_ok(g, "umount /mnt")
    guest_until(g, f"dd if=/dev/{cd} bs=2048 count=1 of=/dev/null 2>&1 | grep -q 'No medium found'",
                "the empty tray after a forced eject", MEDIA_TIMEOUT)
    power_off(g)


def test_snapshot_during_long_write(tmp_path):
    """A snapshot taken while dd writes 48 MiB to ext4 on an ahci-hd (commands in flight on the
    port), with disc B inserted in the ahci-cd in place of the command line's A; the restored VM
    finishes the write, the data is right, the file system clean, and B still in the drive."""
    img, snap = tmp_path / "disk.img", tmp_path / "ahci.snap"
    make_ext4(img)
    disc_a = make_iso(tmp_path / "a.iso", "HYVE_DISC_A", {"a.txt": b"A\n"})
    disc_b = make_iso(tmp_path / "b.iso", "HYVE_DISC_B", {"b.txt": b"B\n"})
    name = "ahci-snap"
    devices = ["-s", f"4,ahci-hd,{img}", "-s", f"5,ahci-cd,{disc_a}", "-o", f"control.socket={sock(name)}"]
    g = Guest(boot_args("cmd", mem="512M", extra_args=devices, name=name))
    try:
        g.wait_for("HYVE-CMD-READY", timeout=240)
        dev, cd = block_device(g, 4, "sd"), block_device(g, 5, "sr")
        control(g, name, "cd-insert", "5:0", disc_b)
        guest_until(g, f'[ "$({read_label(f"/dev/{cd}")})" = HYVE_DISC_B ]', "disc B", MEDIA_TIMEOUT)
        guest_ok(g, f"mount -t ext4 /dev/{dev} /mnt && echo before > /mnt/before.txt && sync")
        guest_ok(g, "dd if=/dev/urandom of=/tmp/src.bin bs=1M count=48 2>/dev/null")
        src_sum = guest_ok(g, "sha256sum /tmp/src.bin").split()[0]
        # The writer must have started (its command line read from the serial port) before the
        # snapshot: input still queued on the host side is not part of the VM.
        mark = len(g.text())
        g.send("(echo WRITER-START; dd if=/tmp/src.bin of=/mnt/during.bin bs=64k conv=fsync 2>/dev/null; "
               "echo WRITER-DONE rc=$?) &\n")
        g.wait_for("WRITER-START", timeout=60, start=mark)
        r = hyvectl(name, "snapshot", snap, "--exit")
        assert r.returncode == 0, r.stderr
        assert g.wait_exit(300) == POWERED_OFF
    finally:
        g.kill()

    g2 = Guest(["-r", snap, "-l", "com1,stdio", "-o", f"control.socket={sock(name)}", name])
    try:
        g2.send("\n")
        g2.wait_for(r"WRITER-DONE rc=0", timeout=300)
        assert guest_ok(g2, "sha256sum /mnt/during.bin", timeout=180).split()[0] == src_sum
        # Past the page cache: the data on the disk after the restore.
        guest_ok(g2, f"umount /mnt && echo 3 > /proc/sys/vm/drop_caches && mount -t ext4 /dev/{dev} /mnt")
        assert guest_ok(g2, "sha256sum /mnt/during.bin", timeout=180).split()[0] == src_sum
        assert guest_ok(g2, "cat /mnt/before.txt").strip() == "before"
        guest_ok(g2, "echo after > /mnt/after.txt && umount /mnt")
        assert guest_ok(g2, read_label(f"/dev/{cd}")).strip() == "HYVE_DISC_B"
        power_off(g2)
    finally:
        g2.kill()
    fsck = e2fsck(img)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert debugfs_cat(img, "/before.txt") == b"before\n"
    assert debugfs_cat(img, "/after.txt") == b"after\n"
    assert hashlib.sha256(debugfs_cat(img, "/during.bin")).hexdigest() == src_sum


@pytest.mark.parametrize("device, words", [
    ("4,ahci-hd,{missing}", ["cannot open disk image {missing}"]),
    ("4,ahci-hd,{dir}", ["{dir}", "directory"]),
    ("4,ahci-hd,{img},sectorsize=1000", ["sectorsize=1000"]),
    ("4,ahci-hd,{img},ser=" + "S" * (ATA_SERIAL_MAX + 1), ["ser"]),
    ("4,ahci,xx:{img}", ["xx"]),
    ("4,ahci,hd:{missing},cd:{iso}", ["{missing}"]),
    ("4,ahci-cd,{missing}", ["{missing}"]),
    ("4,ahci-cd,{small}", ["{small}"]),      # not one whole 2048-byte block
], ids=["missing", "directory", "sectorsize", "serial-too-long", "port-type", "missing-in-list",
        "cd-missing", "cd-too-small"])
def test_bad_options_exit_4(tmp_path, device, words):
    img, small, iso_file = tmp_path / "ok.img", tmp_path / "small.iso", tmp_path / "ok.iso"
    img.write_bytes(bytes(1 << 20))
    small.write_bytes(bytes(CD_BLOCK - 1))
    iso_file.write_bytes(bytes(CD_BLOCK * 16))
    names = {"missing": tmp_path / "missing.img", "dir": tmp_path, "img": img, "small": small, "iso": iso_file}
    r = run_hyve(["-s", device.format(**names), "--kernel", KERNEL, "bad"])
    assert r.returncode == 4, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for word in words:
        assert word.format(**names) in lines[0], lines[0]


def test_uefi_iso_boots_from_ahci_cd(iso, tmp_path):  # noqa: F811 (iso: test_uefi_iso's fixture)
    """OVMF's AHCI and ATAPI drivers find the El Torito image on the CD-ROM (no boot order given),
    GRUB's menu shows on the display, and GRUB reads the kernel and initramfs from the disc
    through the firmware; Linux then finds the same disc as sr0."""
    name = "ahci-uefi-iso"
    vars_copy = tmp_path / "vm_VARS.fd"
    shutil.copyfile(VARS, vars_copy)
    os.makedirs(RUNDIR, exist_ok=True)
    t0 = time.monotonic()
    g = Guest(["-c", "1", "-m", "512M", "-l", f"bootrom,{CODE},{vars_copy}", "-l", "com1,stdio",
               "-s", f"3,ahci-cd,{iso}", "-s", f"5,fbuf,unix={vnc_path(name)}",
               "-o", f"control.socket={sock(name)}", name])
    try:
        g.wait_for(r'BdsDxe: starting Boot\d+ "[^"]*" from PciRoot\(0x0\)/Pci\(0x3,0x0\)/Sata\(0x0,0xFFFF,0x0\)',
                   FIRMWARE_TIMEOUT)
        g.wait_for(r"GNU GRUB", FIRMWARE_TIMEOUT)
        menu = g.wait_for(ENTRY, FIRMWARE_TIMEOUT)
        screenshot_until_menu(name, tmp_path / "grub.png")
        t_menu = time.monotonic() - t0

        g.send("\r")
        g.wait_for(r"GRUB: loading Linux from the ISO", 120, menu.end())
        g.wait_for(r"HYVE-CMD-READY", LINUX_TIMEOUT)
        t_linux = time.monotonic() - t0
        assert CMDLINE in guest_ok(g, "cat /proc/cmdline")
        guest_ok(g, "test -d /sys/firmware/efi")
        cd = block_device(g, 3, "sr")
        assert sysfs(g, cd, "size") == str(iso.stat().st_size // SECTOR)
        out = guest_ok(g, f"dd if=/dev/{cd} bs=2048 skip=16 count=1 2>/dev/null | head -c 6 | tail -c 5")
        assert out == "CD001", out   # the ISO 9660 primary volume descriptor
        print(f"\nGRUB's menu {t_menu:.1f} s after hyve started, the guest's command loop {t_linux:.1f} s")
    finally:
        g.kill()
