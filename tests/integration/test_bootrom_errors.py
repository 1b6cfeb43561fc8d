"""Bad firmware for -l bootrom,CODE[,VARS]: a one-line error naming the file
and the problem, exit status 4, before any guest runs. Uses Debian's ovmf
package (/usr/share/OVMF, /usr/share/ovmf)."""
import os
import shutil

import pytest

from conftest import KERNEL, run_hyve

ERROR = 4
OVMF = "/usr/share/OVMF"
CODE_4M = f"{OVMF}/OVMF_CODE_4M.fd"
VARS_4M = f"{OVMF}/OVMF_VARS_4M.fd"
COMBINED = "/usr/share/ovmf/OVMF.fd"


def firmware(code, vars_=None, *extra):
    spec = f"bootrom,{code}" + (f",{vars_}" if vars_ else "")
    return ["-m", "256M", "-l", spec, "-o", "control.socket=off", *extra, "bad-firmware"]


def assert_one_line_error(result, *fragments):
    assert result.returncode == ERROR, (result.returncode, result.stderr)
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hyve: error: ")
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture
def vars_copy(tmp_path):
    path = tmp_path / "vm_VARS.fd"
    shutil.copyfile(VARS_4M, path)
    return path


def test_missing_code(vars_copy):
    assert_one_line_error(run_hyve(firmware("/nonexistent/OVMF_CODE_4M.fd", vars_copy)),
                          "/nonexistent/OVMF_CODE_4M.fd", "No such file")


def test_truncated_code(tmp_path, vars_copy):
    cut = tmp_path / "cut.fd"
    data = open(CODE_4M, "rb").read()
    cut.write_bytes(data[:-4096])
    assert_one_line_error(run_hyve(firmware(cut, vars_copy)), str(cut), "not a UEFI firmware image")
    cut.write_bytes(data[:-100])
    assert_one_line_error(run_hyve(firmware(cut, vars_copy)), str(cut), "4 KiB")


def test_non_firmware_code(tmp_path, vars_copy):
    junk = tmp_path / "junk.fd"
    junk.write_bytes(os.urandom(64 * 1024))
    assert_one_line_error(run_hyve(firmware(junk, vars_copy)), str(junk), "not a UEFI firmware image")


def test_read_only_vars(vars_copy):
    os.chmod(vars_copy, 0o444)
    assert_one_line_error(run_hyve(firmware(CODE_4M, vars_copy)), str(vars_copy), "read-only")


def test_secure_boot_image_is_refused(vars_copy):
    assert_one_line_error(run_hyve(firmware(f"{OVMF}/OVMF_CODE_4M.secboot.fd", vars_copy)),
                          "OVMF_CODE_4M.secboot.fd", "Secure Boot", "SMM")


def test_vars_that_do_not_match_the_code(tmp_path):
    small = tmp_path / "vars2m.fd"
    shutil.copyfile(f"{OVMF}/OVMF_VARS.fd", small)
    assert_one_line_error(run_hyve(firmware(CODE_4M, small)), str(small), "does not belong to")


def test_combined_image_with_vars(vars_copy):
    assert_one_line_error(run_hyve(firmware(COMBINED, vars_copy)), COMBINED, "combined image")


def test_bootrom_and_kernel_exclude_each_other(vars_copy):
    assert_one_line_error(run_hyve(firmware(CODE_4M, vars_copy, "--kernel", KERNEL)), "--kernel")


@pytest.mark.parametrize("extra,fragments", [
    (["-s", "30,lpc"], ["slot 31", "pci.0.30.0"]),
    (["-s", "31,hostbridge"], ["slot 31 holds 'hostbridge'"]),
    (["-s", "0,hostbridge,devid=0x1237"], ["Q35 host bridge", "vendor or devid"]),
    (["-o", "platform.layout=legacy"], ["platform.layout=q35", "legacy"]),
])
def test_platform_the_firmware_cannot_use(vars_copy, extra, fragments):
    """OVMF recognises Q35 by the host bridge's id and reaches the PM block only through the LPC
    bridge at 0:1f.0: a configuration that hides either is refused before the firmware runs."""
    assert_one_line_error(run_hyve(firmware(CODE_4M, vars_copy, *extra)), "lpc.bootrom", *fragments)
