"""virtio-rnd: the guest's virtio_rng driver binds to hyve's modern virtio PCI
device and /dev/hwrng delivers entropy from the host."""
from conftest import KERNEL, run_hyve


def test_guest_reads_hwrng(boot):
    g = boot("cmd", extra_args=["-s", "4,virtio-rnd"])
    g.wait_for("HYVE-CMD-READY", timeout=240)
    rc, out = g.run("cat /sys/bus/pci/devices/0000:00:04.0/vendor /sys/bus/pci/devices/0000:00:04.0/device")
    assert rc == 0 and out.split() == ["0x1af4", "0x1044"], out
    rc, out = g.run("cat /sys/class/misc/hw_random/rng_current")
    assert rc == 0 and out.strip().startswith("virtio_rng"), out
    reads = []
    for _ in range(2):
        rc, out = g.run("dd if=/dev/hwrng bs=256 count=4 2>/dev/null | od -An -v -tx1 | tr -d ' \\n'")
        assert rc == 0, out
        data = bytes.fromhex(out.strip())
        assert len(data) == 1024
        assert len(set(data)) > 128  # random bytes, not a constant fill
        reads.append(data)
    assert reads[0] != reads[1]
    # MSI-X is in use (one vector per queue plus config).
    rc, out = g.run("grep -c virtio /proc/interrupts")
    assert rc == 0 and int(out.strip()) >= 1, out
    g.send("poweroff -f\n")
    assert g.wait_exit(60) == 1
    assert "needs a reset" not in g.stderr.decode(errors="replace")


def test_rnd_rejects_unknown_slot_syntax():
    r = run_hyve(["-s", "4,virtio-rnd", "-s", "4,virtio-rnd", "--kernel", KERNEL, "x"])
    assert r.returncode == 4
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
