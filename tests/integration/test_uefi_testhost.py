"""A UEFI guest runs on this machine's KVM without killing the test host.

Debian's QEMU 7.2 aborts under TCG (tcg_handle_interrupt: assertion failed) as soon as a nested
KVM guest runs OVMF, because OVMF's interrupt return path writes CR8; tests/testhost/build-qemu
builds the test host's QEMU with that fixed. This test is the check: inside the test host, the
stock QEMU with KVM (the reference VMM, not hyve) runs Debian's OVMF to its UEFI Shell and the
Shell keeps answering for a minute of the firmware's own clock. With the stock QEMU as the
outer QEMU, the test host aborts on the way (tests/testhost/run then reports status 125 and the
assertion in the console log); on hardware KVM it simply passes.
"""
import json
import os
import shutil
import socket

import pytest

from conftest import RUNDIR, Guest

OVMF = "/usr/share/ovmf/OVMF.fd"
# Measured in the test host: the boot manager starts the Shell 34 s after QEMU starts, the prompt
# comes at 43 s, the whole test takes 100 s; with the stock outer QEMU the test host aborted 32 s
# after QEMU started, before the boot manager. These bound a broken run, they are not waited out.
SHELL_TIMEOUT = 900
COMMAND_TIMEOUT = 120
# The issue asks for a UEFI guest that runs for a minute: the Shell's interrupt-driven input
# and timers keep it taking interrupts (each return writes CR8) all along.
FIRMWARE_SECONDS = 60
# `time` answers e.g. "02:35:11 (LOCAL)"; the console is a terminal, so escape sequences (which
# hold no colons) surround the echo and the prompt.
CLOCK = r"(\d\d):(\d\d):(\d\d) \((?:LOCAL|UTC)"


def required(path, package):
    if not os.path.exists(path):
        pytest.fail(f"{path} not found: install the {package} package (scripts/install-deps)",
                    pytrace=False)
    return path


def qmp(path, command):
    """Runs one QMP command on the monitor socket at path; returns its 'return' value."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(COMMAND_TIMEOUT)
        s.connect(path)
        stream = s.makefile("rw")
        json.loads(stream.readline())   # the greeting
        for cmd in ({"execute": "qmp_capabilities"}, {"execute": command}):
            stream.write(json.dumps(cmd) + "\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if "event" not in reply:
                    break
            assert "return" in reply, f"QMP {cmd['execute']}: {reply}"
        return reply["return"]


def shell_time(guest):
    """Types the Shell's `time` command; returns the firmware's clock in seconds of the day."""
    start = len(guest.output)
    guest.send("time\r")
    m = guest.wait_for(CLOCK, COMMAND_TIMEOUT, start)
    h, mi, s = (int(g) for g in m.groups())
    guest.wait_for(r"Shell> ", COMMAND_TIMEOUT, m.end())
    return h * 3600 + mi * 60 + s


@pytest.fixture
def ovmf_under_qemu():
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        pytest.fail("qemu-system-x86_64 not found: install the qemu-system-x86 package "
                    "(scripts/install-deps)", pytrace=False)
    required(OVMF, "ovmf")
    os.makedirs(RUNDIR, exist_ok=True)
    monitor = os.path.join(RUNDIR, "uefi-testhost.qmp")
    if os.path.exists(monitor):
        os.unlink(monitor)
    # No disk and no NIC: the boot manager finds nothing else to boot and starts the built-in
    # Shell, whose console is COM1 on our stdio.
    guest = Guest(["-nodefaults", "-no-user-config", "-display", "none", "-accel", "kvm",
                   "-cpu", "host", "-m", "256", "-bios", OVMF, "-serial", "stdio",
                   "-qmp", f"unix:{monitor},server=on,wait=off"], binary=qemu)
    yield guest, monitor
    guest.kill()


def test_ovmf_shell_runs_a_minute_without_killing_the_test_host(ovmf_under_qemu):
    guest, monitor = ovmf_under_qemu
    guest.wait_for(r'BdsDxe: starting Boot\d+ "EFI Internal Shell"', SHELL_TIMEOUT)
    guest.wait_for(r"Shell> ", SHELL_TIMEOUT)

    # The Shell must keep answering for FIRMWARE_SECONDS by its own clock (the RTC): command
    # after command, no sleeping here, each answer is the firmware's work.
    first = last = shell_time(guest)
    answers = 1
    while (last - first) % 86400 < FIRMWARE_SECONDS:
        last = shell_time(guest)
        answers += 1
    assert answers >= 2

    # Still alive on both levels: this code runs in the test host, and the inner QEMU says its
    # guest is running.
    status = qmp(monitor, "query-status")
    assert status["status"] == "running", status
    assert guest.proc.poll() is None, f"QEMU exited with {guest.proc.poll()}"
