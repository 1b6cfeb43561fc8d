"""In-process reset with firmware (-l bootrom and -o reboot=restart): the UEFI Shell's `reset`
makes OVMF reset the machine (ResetSystem: the 0xCF9 reset register); the firmware runs again
from its reset vector in the same hyve process, its Shell comes back on COM1, and `reset -s`
(ACPI soft-off) then ends hyve with status 1. Without reboot=restart the same reset ends hyve
with status 0. Uses Debian's ovmf package."""
import shutil

import pytest

from conftest import Guest, sock

POWERED_OFF = 1
REBOOTED = 0
CODE_4M = "/usr/share/OVMF/OVMF_CODE_4M.fd"
VARS_4M = "/usr/share/OVMF/OVMF_VARS_4M.fd"
BANNER = "UEFI Interactive Shell"
PROMPT = r"Shell> "


@pytest.fixture
def vars_copy(tmp_path):
    path = tmp_path / "vm_VARS.fd"
    shutil.copyfile(VARS_4M, path)
    return path


def firmware_guest(name, vars_copy, *extra, cpus=2):
    return Guest(["-c", cpus, "-m", "512M", "-l", f"bootrom,{CODE_4M},{vars_copy}", "-l", "com1,stdio",
                  "-o", f"control.socket={sock(name)}", *extra, name])


def shell_ready(g, start=0):
    """Waits for the Shell's banner and prompt after offset start; returns the offset after the prompt."""
    g.wait_for(BANNER, timeout=300, start=start)
    return g.wait_for(PROMPT, timeout=120, start=start).end()


def test_firmware_restarts_in_process(vars_copy):
    g = firmware_guest("reset-ovmf", vars_copy, "-o", "reboot=restart")
    try:
        after = shell_ready(g)
        g.send("reset\r")
        shell_ready(g, after)
        assert g.text().count(BANNER) == 2
        assert g.proc.poll() is None
        g.send("reset -s\r")
        assert g.wait_exit(120) == POWERED_OFF
        assert "error" not in g.stderr.decode(errors="replace").lower(), g.stderr
    finally:
        g.kill()


def test_firmware_reset_exits_0_by_default(vars_copy):
    g = firmware_guest("reset-ovmf-exit", vars_copy, cpus=1)
    try:
        shell_ready(g)
        g.send("reset\r")
        assert g.wait_exit(120) == REBOOTED
        assert g.text().count(BANNER) == 1
    finally:
        g.kill()
