"""What firmware boot offers through fw_cfg besides ACPI, as the stock OVMF uses it, read back in
its UEFI Shell over COM1: the SMBIOS tables (smbiosview) and the boot order from bootindex=
(bcfg boot dump -v: OVMF puts the matching boot options first). Uses Debian's ovmf package."""
import re
import shutil

import pytest

from conftest import Guest, sock

POWERED_OFF = 1
CODE_4M = "/usr/share/OVMF/OVMF_CODE_4M.fd"
VARS_4M = "/usr/share/OVMF/OVMF_VARS_4M.fd"
PROMPT = "Shell> "


def run_shell(g, command, timeout=120):
    """Types command at the Shell prompt; returns what it printed up to the next prompt."""
    start = len(g.output)
    g.send(command + "\r")
    m = g.wait_for(re.escape(PROMPT), timeout=timeout, start=start + len(command))
    return g.text()[start:m.start()]


@pytest.fixture
def firmware_vm(tmp_path):
    vars_copy = tmp_path / "vm_VARS.fd"
    shutil.copyfile(VARS_4M, vars_copy)
    disks = []
    for n in (1, 2):
        d = tmp_path / f"disk{n}.img"
        with open(d, "wb") as f:
            f.truncate(1 << 20)
        disks.append(d)
    # Slot 4 boots second, slot 5 first: the reverse of the order the firmware finds them in.
    g = Guest(["-c", 3, "-m", "512M", "-l", f"bootrom,{CODE_4M},{vars_copy}", "-l", "com1,stdio",
               "-s", f"4,virtio-blk,{disks[0]},bootindex=2", "-s", f"5,virtio-blk,{disks[1]},bootindex=1",
               "-o", f"control.socket={sock('fw-tables')}", "fw-tables"])
    try:
        g.wait_for("UEFI Interactive Shell", timeout=300)
        g.wait_for(re.escape(PROMPT), timeout=120)
        yield g
        g.send("reset -s\r")
        assert g.wait_exit(120) == POWERED_OFF
    finally:
        g.kill()


def test_smbios_reaches_the_firmware(firmware_vm):
    out = run_shell(firmware_vm, "smbiosview -t 1")
    assert re.search(r"Manufacturer: hyve\r?\n", out), out
    assert re.search(r"ProductName: hyve\r?\n", out), out
    out = run_shell(firmware_vm, "smbiosview -t 4")
    assert re.search(r"CoreCount: 3\r?\n", out), out
    assert re.search(r"ProcessorManufacturer: (GenuineIntel|AuthenticAMD)\r?\n", out), out
    out = run_shell(firmware_vm, "smbiosview -t 0")
    assert "Vendor: hyve" not in out  # the BIOS information is the firmware's own
    assert re.search(r"Vendor: \S", out), out


def test_bootindex_orders_the_firmware_boot_options(firmware_vm):
    out = run_shell(firmware_vm, "bcfg boot dump -v")
    slots = [m.group(1) for m in re.finditer(r"PciRoot\(0x0\)/Pci\(0x([45]),0x0\)", out)]
    assert slots and slots[0] == "5" and "4" in slots, out
    assert slots.index("5") < slots.index("4"), out
