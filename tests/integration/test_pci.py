"""The PCI bus: the stock kernel finds the host bridge and the LPC bridge
(the Q35 MCH and the ICH9 LPC bridge, as OVMF expects them) through config
mechanism #1 and ECAM at 0xB0000000, with the root bridge, windows and
interrupt routing the ACPI tables announce; bad slot configurations are
refused before anything runs."""
import re

import pytest

from conftest import Guest, boot_args, run_hyve
from test_errors import assert_one_line_error, base

HOSTBRIDGE = "0000:00:00.0"
LPC = "0000:00:1f.0"


@pytest.fixture(scope="module")
def guest():
    g = Guest(boot_args("cmd", extra_args=["-s", "0,hostbridge,pcie", "-s", "31,lpc"], name="shared"))
    g.wait_for("HYVE-CMD-READY", timeout=180)
    yield g
    g.kill()


def sysfs(g, dev, attr):
    rc, out = g.run(f"cat /sys/bus/pci/devices/{dev}/{attr}")
    assert rc == 0, out
    return out.strip()


def test_devices_listed(guest):
    rc, out = guest.run("ls /sys/bus/pci/devices")
    assert rc == 0
    assert out.split() == [HOSTBRIDGE, LPC]


@pytest.mark.parametrize("dev,vendor,device,klass", [
    (HOSTBRIDGE, "0x8086", "0x29c0", "0x060000"),
    (LPC, "0x8086", "0x2918", "0x060100"),
])
def test_ids_and_class(guest, dev, vendor, device, klass):
    assert sysfs(guest, dev, "vendor") == vendor
    assert sysfs(guest, dev, "device") == device
    assert sysfs(guest, dev, "class") == klass
    assert sysfs(guest, dev, "subsystem_vendor") == vendor


def test_ecam_in_use(guest):
    rc, out = guest.run("dmesg | grep -i -E 'MMCONFIG|ECAM'")
    assert rc == 0, "no MMCONFIG messages"
    assert re.search(r"MMCONFIG for domain 0000 \[bus 00-ff\] at \[mem 0xb0000000-0xbfffffff\]", out), out
    # Reserved in the e820 map, so the kernel uses ECAM from its early PCI set-up on.
    assert "MMCONFIG at [mem 0xb0000000-0xbfffffff] reserved in E820" in out, out
    assert "not using MMCONFIG" not in out, out
    rc, out = guest.run("grep -i mmconfig /proc/iomem")
    assert "b0000000-bfffffff" in out, out


def config_bytes(g, dev, offset, count):
    rc, out = g.run(f"od -A n -t x1 -j {offset} -N {count} /sys/bus/pci/devices/{dev}/config")
    assert rc == 0, out
    return out.split()


def test_chipset_registers(guest):
    # What OVMF reads: PCIEXBAR says ECAM is at 0xB0000000 (enabled, 256 MiB); the LPC bridge's PMBASE
    # is 0x600 (the FADT's PM block) with ACPI_EN set; RCBA reads 0.
    assert config_bytes(guest, HOSTBRIDGE, 0x60, 8) == ["01", "00", "00", "b0", "00", "00", "00", "00"]
    assert config_bytes(guest, LPC, 0x40, 4) == ["01", "06", "00", "00"]
    assert config_bytes(guest, LPC, 0x44, 1) == ["80"]
    assert config_bytes(guest, LPC, 0xF0, 4) == ["00", "00", "00", "00"]


def test_lowmem_ends_at_ecam(boot):
    """RAM below 4 GiB ends at 0xB0000000, where ECAM begins, and the rest moves above 4 GiB
    (3 GiB of RAM here: 2.75 GiB below, 256 MiB above)."""
    g = boot("cmd", mem="3G", name="lowmem")
    g.wait_for("HYVE-CMD-READY", timeout=180)
    rc, out = g.run("dmesg | grep 'BIOS-e820:'")
    assert "[mem 0x0000000000100000-0x00000000afffffff] usable" in out, out
    assert "[mem 0x00000000b0000000-0x00000000bfffffff] reserved" in out, out
    assert "[mem 0x0000000100000000-0x000000010fffffff] usable" in out, out
    rc, out = g.run("grep 'System RAM' /proc/iomem")
    assert "00100000-afffffff : System RAM" in out, out
    assert "100000000-10fffffff : System RAM" in out, out


def test_extended_config_space_through_ecam(guest):
    # The pcie host bridge has 4 KiB of config space; only ECAM reaches past 256 bytes,
    # so the kernel sizes it at 4096 only if its ECAM reads worked.
    rc, out = guest.run(f"wc -c < /sys/bus/pci/devices/{HOSTBRIDGE}/config")
    assert out.strip() == "4096", out
    rc, out = guest.run(f"wc -c < /sys/bus/pci/devices/{LPC}/config")
    assert out.strip() == "256", out
    # The PCI Express capability is found by walking the capability list.
    rc, out = guest.run(f"od -A d -t x1 -j 52 -N 1 /sys/bus/pci/devices/{HOSTBRIDGE}/config")
    cap = int(out.split()[1], 16)
    rc, out = guest.run(f"od -A d -t x1 -j {cap} -N 1 /sys/bus/pci/devices/{HOSTBRIDGE}/config")
    assert out.split()[1] == "10", out


def test_root_bridge_from_acpi(guest):
    rc, out = guest.run("dmesg | grep -E 'PCI0|PNP0A03|pci_bus 0000:00'")
    assert "PCI Root Bridge [PCI0] (domain 0000 [bus 00-ff])" in out, out
    for window in ("root bus resource [bus 00-ff]",
                   "root bus resource [io  0x0000-0x0cf7 window]",
                   "root bus resource [io  0x0d00-0xffff window]",
                   "root bus resource [mem 0xc0000000-0xfbffffff window]"):
        assert window in out, (window, out)
    # 64-bit window: from above RAM (256 MiB here), aligned to 32 GiB, to the end of the window OVMF
    # would pick from this CPU: the classic 32 GiB, or up to a power of two within the physical
    # address width (CPUID 0x80000008) when OVMF trusts it.
    m = re.search(r"root bus resource \[mem 0x800000000-0x([0-9a-f]+) window\]", out)
    assert m, out
    end = int(m.group(1), 16) + 1
    rc, info = guest.run("grep -m1 'address sizes' /proc/cpuinfo")
    bits = int(re.search(r"(\d+) bits physical", info).group(1))
    assert end == 0x1000000000 or (end & (end - 1) == 0 and 0x1000000000 < end <= 1 << bits), (hex(end), info)


def test_no_pci_or_acpi_errors(guest):
    rc, out = guest.run("dmesg | grep -iE 'PCI: Fatal|ACPI (Error|BIOS Error)|ACPI Exception|"
                        "_PRT.*(error|fail)|can.t claim|BAR .* failed' || true")
    assert out.strip() == "", out


def test_reboot_through_0xcf9(guest):
    # The reset register (0xCF9) shares the dword at 0xCF8 with CONFIG_ADDRESS; it must still reboot.
    guest.send("reboot -f\n")
    assert guest.wait_exit(60) == 0


def test_default_hostbridge_added(boot):
    g = boot("cmd")
    g.wait_for("HYVE-CMD-READY", timeout=180)
    rc, out = g.run("ls /sys/bus/pci/devices; cat /sys/bus/pci/devices/*/class")
    assert out.split() == [HOSTBRIDGE, "0x060000"], out


def have_model(name):
    return run_hyve(["-s", f"3,{name}", "--print-config", "probe"]).returncode == 0


def test_intx_through_prt(boot):
    """With MSI off, a device interrupts through INTA: GSI 16 + (slot 3 + INTA) % 8 = 19, which the
    kernel learns from _PRT (level, active-low) and KVM's I/O APIC delivers while the line is high."""
    if not have_model("virtio-rnd"):
        pytest.skip("no virtio-rnd model in this build to raise INTx")
    g = boot("cmd", extra_cmdline="pci=nomsi", extra_args=["-s", "3,virtio-rnd"])
    g.wait_for("HYVE-CMD-READY", timeout=180)
    assert g.run("cat /sys/bus/pci/devices/0000:00:03.0/irq")[1].strip() == "19"
    rc, out = g.run("head -c 4096 /dev/hwrng | wc -c")
    assert out.strip() == "4096", out
    rc, out = g.run("grep virtio /proc/interrupts")
    m = re.match(r"\s*19:\s+(\d+)\s+IO-APIC\s+19-fasteoi\s+virtio", out)
    assert m and 0 < int(m.group(1)) < 100000, out
    rc, out = g.run("dmesg | grep -iE 'nobody cared|irq 19: ' || true")
    assert out.strip() == "", out


# ---- bad input: one line, status 4, nothing started ----

@pytest.mark.parametrize("args,fragments", [
    (["-s", "3,lpc", "-s", "3,hostbridge"], ["3", "already holds a device"]),
    (["-s", "1:3:0,lpc"], ["pci.1.3.0", "only PCI bus 0"]),
    (["-s", "3:1,lpc"], ["pci.0.3.1", "function 0"]),
    (["-s", "3,no-such-device"], ["no-such-device", "unknown device"]),
    (["-s", "30,lpc", "-s", "31,lpc"], ["pci.0.31.0", "already an LPC bridge"]),
    (["-o", "pci.0.5.0.foo=1"], ["pci.0.5.0", "no device"]),
    (["-o", "pci.0.40.0.device=lpc"], ["pci.0.40.0", "slot"]),
    (["-s", "0,hostbridge,vendor=0x12345"], ["vendor", "16-bit"]),
    (["-s", "0,hostbridge,pcie=maybe"], ["pcie"]),
])
def test_bad_pci_input(args, fragments):
    assert_one_line_error(run_hyve(base(*args)), *fragments)
