"""The stock Debian kernel boots under hyve: CPUs, memory, serial both ways,
clock, and guest-initiated poweroff and reboot map to bhyve's exit statuses."""
import os
import re
import time

import pytest

from conftest import Guest, boot_args

POWERED_OFF = 1
REBOOTED = 0
HALTED = 2


@pytest.fixture(scope="module")
def guest2():
    """One 2-vCPU, 512 MiB guest shared by the read-only checks below; powered off by the last test."""
    g = Guest(boot_args("cmd", cpus=2, mem="512M", name="shared"))
    g.wait_for("HYVE-CMD-READY", timeout=180)
    yield g
    g.kill()


def test_init_reached(guest2):
    assert "HYVE-INIT-REACHED" in guest2.text()


def test_guest_sees_two_cpus(guest2):
    rc, out = guest2.run("grep -c ^processor /proc/cpuinfo")
    assert rc == 0 and out.strip() == "2"
    rc, out = guest2.run("cat /sys/devices/system/cpu/online")
    assert out.strip() == "0-1"


def test_guest_sees_configured_memory(guest2):
    rc, out = guest2.run("grep MemTotal /proc/meminfo")
    kib = int(re.search(r"(\d+)", out).group(1))
    # The kernel keeps a little for itself; what is left must be close to 512 MiB.
    assert 440 * 1024 < kib <= 512 * 1024
    rc, out = guest2.run("dmesg | grep -i 'e820: \\[mem' || true")
    assert "usable" in out


def test_serial_both_ways(guest2):
    rc, out = guest2.run("echo hello-from-guest-$((6*7))")
    assert rc == 0 and out.strip() == "hello-from-guest-42"
    rc, out = guest2.run("exit 3")
    assert rc == 3


def test_guest_clock_matches_host(guest2):
    rc, out = guest2.run("date +%s")
    assert abs(int(out.strip()) - time.time()) < 5
    rc, out = guest2.run("cat /sys/class/rtc/rtc0/since_epoch 2>/dev/null || hwclock -u -r")
    assert rc == 0


def test_kvmclock_in_use(guest2):
    rc, out = guest2.run("cat /sys/devices/system/clocksource/clocksource0/current_clocksource")
    assert out.strip() == "kvm-clock"


def test_acpi_tables_found(guest2):
    rc, out = guest2.run("dmesg | grep -E 'ACPI: (RSDP|XSDT|FACP|DSDT|APIC)'")
    for table in ("RSDP", "XSDT", "FACP", "DSDT", "APIC"):
        assert f"ACPI: {table}" in out
    rc, out = guest2.run("dmesg | grep -iE 'ACPI (Error|BIOS Error)' || true")
    assert out.strip() == "", out


def pnp_devices(g):
    """Linux's PNP devices (from the DSDT's entries) as {ID: [resources, ...]}, IDs upper-cased."""
    rc, out = g.run("for d in /sys/bus/pnp/devices/*; do echo PNPDEV $(cat $d/id $d/resources); done")
    assert rc == 0, out
    found = {}
    for line in out.upper().splitlines():
        if line.startswith("PNPDEV "):
            ident, _, res = line[len("PNPDEV "):].partition(" ")
            found.setdefault(ident, []).append(res)
    return found


def test_dsdt_devices_found(guest2):
    """Each device's DSDT entry reaches Linux: the one serial port given (com1; an absent
    port is not announced), the RTC (which rtc_cmos then takes from PNP, not from its
    platform-device fallback), the i8042 and the PCI root bridge."""
    found = pnp_devices(guest2)
    assert len(found.get("PNP0501", [])) == 1, found
    assert "IO 0X3F8-0X3FF" in found["PNP0501"][0] and "IRQ 4" in found["PNP0501"][0], found
    assert "IO 0X70-0X71" in found["PNP0B00"][0] and "IRQ 8" in found["PNP0B00"][0], found
    assert "IO 0X60-0X60" in found["PNP0303"][0] and "IO 0X64-0X64" in found["PNP0303"][0], found
    assert "IRQ 12" in found["PNP0F13"][0], found
    assert "PNP0C02" in found, found
    rc, out = guest2.run("dmesg | grep -E 'rtc_cmos|PCI Root Bridge'")
    assert re.search(r"rtc_cmos 00:[0-9a-f]+: registered as rtc0", out), out
    assert "PCI Root Bridge [PCI0]" in out, out


def test_guest_poweroff_exits_1(guest2):
    guest2.send("poweroff -f\n")
    assert guest2.wait_exit(60) == POWERED_OFF


def test_guest_reboot_exits_0(boot):
    g = boot("cmd", cpus=1)
    g.wait_for("HYVE-CMD-READY", timeout=180)
    rc, out = g.run("grep -c ^processor /proc/cpuinfo")
    assert out.strip() == "1"
    g.send("reboot -f\n")
    assert g.wait_exit(60) == REBOOTED


def test_guest_halt_exits_2(boot):
    """An idle guest (HLT with interrupts on) keeps running; after Linux's halt every vCPU
    waits in HLT with interrupts off, and hyve ends with bhyve's status 2."""
    g = boot("cmd", cpus=2)
    g.wait_for("HYVE-CMD-READY", timeout=180)
    time.sleep(5)
    assert g.proc.poll() is None, "an idle guest was taken for halted"
    rc, out = g.run("echo still-here")
    assert rc == 0 and out.strip() == "still-here"
    g.send("halt -f\n")
    assert g.wait_exit(60) == HALTED


def test_asan_build_boots_and_powers_off(boot):
    """The ASan+UBSan build runs one guest from boot to poweroff without a sanitizer report."""
    if not os.path.isfile(os.environ.get("HYVE_ASAN_BIN", "")):
        pytest.fail("HYVE_ASAN_BIN does not name the ASan build of hyve (tests/run sets it)")
    g = boot("cmd", cpus=2, binary=os.environ["HYVE_ASAN_BIN"])
    g.wait_for("HYVE-CMD-READY", timeout=240)
    rc, out = g.run("echo sanitized")
    assert out.strip() == "sanitized"
    g.send("poweroff -f\n")
    assert g.wait_exit(90) == POWERED_OFF
    err = g.stderr.decode(errors="replace")
    assert "ERROR: AddressSanitizer" not in err and "runtime error" not in err, err
