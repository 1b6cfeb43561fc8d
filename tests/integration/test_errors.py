"""Bad input from users: a one-line error naming the problem, exit status 4,
and no guest started (hyve returns at once without printing guest output)."""
import pytest

from conftest import INITRD, KERNEL, run_hyve

ERROR = 4


def base(*extra, cpus=1, mem="256M", kernel=None):
    return ["-c", cpus, "-m", mem, "--kernel", kernel or KERNEL, "--initrd", INITRD,
            "--cmdline", "console=ttyS0", "-l", "com1,stdio", *extra, "bad-input"]


def assert_one_line_error(result, *fragments):
    assert result.returncode == ERROR, (result.returncode, result.stderr)
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hyve: error: ")
    for f in fragments:
        assert f in lines[0], lines[0]
    # Nothing ran: the guest would have printed its boot banner on COM1.
    assert "Linux version" not in result.stdout


def test_missing_kernel():
    r = run_hyve(base(kernel="/nonexistent/vmlinuz"))
    assert_one_line_error(r, "/nonexistent/vmlinuz", "No such file")


def test_non_kernel_file_as_kernel(tmp_path):
    junk = tmp_path / "not-a-kernel"
    junk.write_bytes(b"\x7fELF" + bytes(8192))
    r = run_hyve(base(kernel=junk))
    assert_one_line_error(r, str(junk), "not a Linux bzImage")


def test_directory_as_kernel(tmp_path):
    r = run_hyve(base(kernel=tmp_path))
    assert_one_line_error(r, str(tmp_path), "not a regular file")


def test_zero_memory():
    assert_one_line_error(run_hyve(base(mem="0")), "memory")


def test_bad_memory_size():
    assert_one_line_error(run_hyve(base(mem="lots")), "-m lots")


def test_zero_cpus():
    assert_one_line_error(run_hyve(base(cpus=0)), "vCPUs")


@pytest.mark.parametrize("cpus", [65, 100000])
def test_too_many_cpus(cpus):
    assert_one_line_error(run_hyve(base(cpus=cpus)), "vCPUs")


def test_unknown_device():
    assert_one_line_error(run_hyve(base("-s", "5,no-such-device")), "unknown device 'no-such-device'")


def test_misspelt_device_option_is_refused():
    """Not silently ignored: this once started VNC without a password."""
    r = run_hyve(base("-s", "3,fbuf,tcp=5901,pasword=x"))
    assert_one_line_error(r, "pci.0.3.0.pasword: unknown option of fbuf (did you mean 'password'?)")


def test_unknown_top_level_key_is_refused(tmp_path):
    assert_one_line_error(run_hyve(base("-o", "memroy.size=1G")),
                          "memroy.size: unknown option (did you mean 'memory.size'?)")
    cfg = tmp_path / "vm.conf"
    cfg.write_text("cpus=1\nfrobnicate=yes\n")
    assert_one_line_error(run_hyve(base("-k", cfg)), "frobnicate: unknown option")


def test_malformed_values_are_refused():
    assert_one_line_error(run_hyve(base("-s", "7,xhci,tablet", "-o", "pci.0.7.0.kbd=maybe")),
                          "pci.0.7.0.kbd=maybe: expected true or false")
    assert_one_line_error(run_hyve(base("-o", "log.level=loud")), "log.level=loud: expected error, warn, info or debug")
    assert_one_line_error(run_hyve(base("-o", "sandbox=maybe")), "sandbox.enable=maybe: expected true or false")


def test_unknown_option():
    assert_one_line_error(run_hyve(["-Q", "x", "vm"]), "-Q")


def test_unknown_long_option():
    assert_one_line_error(run_hyve(["--frobnicate", "vm"]), "--frobnicate")


def test_missing_vm_name():
    assert_one_line_error(run_hyve(["-c", "1"]), "VM name")


def test_bad_serial_backend():
    r = run_hyve(base("-l", "com2,carrier-pigeon"))
    assert_one_line_error(r, "carrier-pigeon")


def test_missing_initrd():
    args = base()
    args[args.index("--initrd") + 1] = "/nonexistent/initrd.gz"
    assert_one_line_error(run_hyve(args), "/nonexistent/initrd.gz")


def test_config_file_errors(tmp_path):
    cfg = tmp_path / "vm.conf"
    cfg.write_text("cpus=1\nthis line has no equals sign\n")
    assert_one_line_error(run_hyve(["-k", cfg, "vm"]), "vm.conf:2")


def test_print_config_shows_resolved_tree(tmp_path):
    cfg = tmp_path / "vm.conf"
    cfg.write_text("cpus=3\nmemory.size=1G\n")
    r = run_hyve(["-k", cfg, "-c", "2", "-o", "lpc.com1.path=stdio", "--print-config", "myvm"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "cpus=2" in lines
    assert "memory.size=1G" in lines
    assert "lpc.com1.path=stdio" in lines
    assert "name=myvm" in lines


def test_asan_build_rejects_bad_input_cleanly(tmp_path):
    """The sanitizer build reports no leak or UB on the error paths (it would change the status)."""
    import os
    import subprocess
    asan = os.environ.get("HYVE_ASAN_BIN", "")
    if not os.path.isfile(asan):
        pytest.fail("HYVE_ASAN_BIN does not name the ASan build of hyve (tests/run sets it)")
    cases = [base("-s", "5,no-such-device"), base("-s", "3,hostbridge", "-s", "3,lpc"), base(cpus=0),
             base(mem="0"), base(kernel="/nonexistent/vmlinuz"), base(kernel=tmp_path), ["-Q", "vm"],
             base("-l", "com2,carrier-pigeon"), ["-r", "/nonexistent.snap", "vm"],
             base("-s", "3,fbuf,tcp=5901,pasword=x"), base("-o", "memroy.size=1G")]
    for args in cases:
        r = subprocess.run([asan] + [str(a) for a in args], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == ERROR, (args, r.stderr[-2000:])
        assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-2000:]
