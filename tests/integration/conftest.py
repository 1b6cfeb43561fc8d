"""Shared fixtures for integration tests: they boot the stock Debian kernel
under hyve on real KVM (directly on hardware, or inside the test host)."""
import os
import pathlib
import re
import subprocess
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("HYVE_CACHE", REPO / ".cache"))


def _path_from_env(var, default):
    value = os.environ.get(var)
    return pathlib.Path(value) if value else pathlib.Path(default)


HYVE = _path_from_env("HYVE_BIN", REPO / "build" / "hyve")
def _default_kernel():
    found = sorted((CACHE / "kernel" / "root" / "boot").glob("vmlinuz-*"))
    return found[-1] if found else CACHE / "kernel" / "missing-vmlinuz"


KERNEL = _path_from_env("HYVE_KERNEL", _default_kernel())
INITRD = _path_from_env("HYVE_INITRD", CACHE / "initramfs-test.cpio.gz")
HYVECTL = HYVE.parent / "hyvectl"
RUNDIR = os.environ.get("HYVE_RUNDIR", "/run/hyve-tests")


def sock(name):
    """The control socket of the VM called name."""
    os.makedirs(RUNDIR, exist_ok=True)
    return os.path.join(RUNDIR, f"{name}.sock")


def hyvectl(name, *args, timeout=300):
    return subprocess.run([str(HYVECTL), f"--socket={sock(name)}", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def real_kvm_problem():
    """Why this machine cannot run real guests, or None when it can."""
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist"
    if os.path.exists("/sys/module/kvm_pvm"):
        return ("/dev/kvm is kvm_pvm (software, cannot boot Linux): "
                "run the suite through tests/testhost/run")
    return None


@pytest.fixture(scope="session", autouse=True)
def require_real_kvm():
    problem = real_kvm_problem()
    if problem:
        pytest.fail("integration tests need real KVM: " + problem, pytrace=False)
    for what, path in (("hyve binary", HYVE), ("kernel", KERNEL), ("test initramfs", INITRD)):
        if not path.is_file():
            pytest.fail(f"{what} not found at {path} (run tests/run)", pytrace=False)


class Guest:
    """A hyve process whose COM1 is on its stdio; output is collected by a thread."""

    def __init__(self, args, binary=None):
        self.args = [str(binary or HYVE)] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self.output = bytearray()
        self.stderr = bytearray()
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.output), daemon=True),
                        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True)]
        for t in self.threads:
            t.start()

    def _pump(self, stream, buf):
        while True:
            chunk = stream.read(4096)
            if not chunk:
                break
            with self.cond:
                buf.extend(chunk)
                self.cond.notify_all()

    def text(self):
        with self.cond:
            return self.output.decode(errors="replace")

    def wait_for(self, pattern, timeout=120, start=0):
        """Waits until pattern (a regex) appears in serial output after offset start; returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = regex.search(self.output.decode(errors="replace"), start)
                if m:
                    return m
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._pumps_alive()):
                    raise AssertionError(
                        f"timed out waiting for {pattern!r}; hyve status {self.proc.poll()}; "
                        f"serial tail:\n{self.text_tail()}\nstderr:\n{self.stderr.decode(errors='replace')}")
                self.cond.wait(min(remaining, 0.5))

    def _pumps_alive(self):
        return any(t.is_alive() for t in self.threads)

    def text_tail(self, n=3000):
        return self.output.decode(errors="replace")[-n:]

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def run(self, command, timeout=60):
        """Runs a shell command in the guest's command loop; returns (rc, output)."""
        start = len(self.output)
        self.send(command + "\n")
        m = self.wait_for(r"(?s)HYVE-CMD-BEGIN\r?\n(.*?)HYVE-CMD-END rc=(\d+)", timeout, start)
        return int(m.group(2)), m.group(1).replace("\r", "")

    def wait_exit(self, timeout=60):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"hyve did not exit; serial tail:\n{self.text_tail()}")
        for t in self.threads:
            t.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def boot_args(test, cpus=1, mem="256M", extra_cmdline="", extra_args=(), name=None):
    """Arguments that boot a guest running tests/guest/<test>.sh as VM test-<name or test>."""
    cmdline = f"console=ttyS0 quiet hyve.test={test} {extra_cmdline}".strip()
    return ["-c", cpus, "-m", mem, "--kernel", KERNEL, "--initrd", INITRD,
            "--cmdline", cmdline, "-l", "com1,stdio", *extra_args, f"test-{name or test}"]


@pytest.fixture
def boot():
    """Factory: boot(test, **kw) starts a guest running tests/guest/<test>.sh; killed at teardown."""
    guests = []

    def start(test, binary=None, **kw):
        g = Guest(boot_args(test, **kw), binary=binary)
        guests.append(g)
        return g

    yield start
    for g in guests:
        g.kill()


def run_hyve(args, timeout=30):
    """Runs hyve to completion (no guest expected); returns CompletedProcess with text output."""
    return subprocess.run([str(HYVE)] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# ---- resumable runs (tests/run) ----
# With HYVE_RESULTS set, every finished test appends "OUTCOME<TAB>NODEID" to that file as soon
# as it ends, and tests already listed there are not run again. tests/run uses this to carry
# on where a wedged test host stopped instead of losing everything that had finished before.
# HYVE_RUNNING names a file holding the test that is running right now; HYVE_COLLECTED one
# that receives every selected test's node id.
_RESULTS = os.environ.get("HYVE_RESULTS")
_RUNNING = os.environ.get("HYVE_RUNNING")
_COLLECTED = os.environ.get("HYVE_COLLECTED")
_outcomes = {}


def _append_durably(path, line):
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _recorded():
    try:
        with open(_RESULTS) as f:
            return {line.rstrip("\n").split("\t", 1)[1] for line in f if "\t" in line}
    except FileNotFoundError:
        return set()


def pytest_collection_modifyitems(config, items):
    if _CLAIMS:
        _longest_first(items)   # a stable sort: the usual order within a module
    if not _RESULTS:
        return
    done = _recorded()
    kept = [item for item in items if item.nodeid not in done]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid in done])
        items[:] = kept


def pytest_collection_finish(session):
    """Writes the selected tests (-k and the like applied) once, in the first test host of a
    run, when none has finished yet: tests/run counts each one that never finished as failed."""
    if _COLLECTED and not os.path.exists(_COLLECTED):
        with open(_COLLECTED, "w") as f:
            f.writelines(item.nodeid + "\n" for item in session.items)


def pytest_runtest_logstart(nodeid, location):
    if _RUNNING:
        with open(_RUNNING, "w") as f:
            f.write(nodeid + "\n")


def pytest_runtest_logreport(report):
    if not _RESULTS:
        return
    previous = _outcomes.get(report.nodeid, "passed")
    if report.failed:
        outcome = "failed"
    elif report.skipped and previous == "passed":
        outcome = "skipped"   # also an expected failure (xfail): it does not count as a pass
    else:
        outcome = previous
    _outcomes[report.nodeid] = outcome
    if report.when == "teardown":
        _append_durably(_RESULTS, f"{outcome}\t{report.nodeid}\n")


# ---- sharing the suite between test hosts (tests/run) ----
# On a machine without hardware KVM each test host emulates one CPU on one core, so tests/run
# starts one test host per core and they take test modules from one queue: with HYVE_CLAIMS
# set (a folder both can write: the machine's own, shared over 9p), a module runs in the first
# shard that creates HYVE_CLAIMS/<module> (mkdir is atomic on the machine's file system) and
# the other shard passes over it. A module stays whole, so module-scoped guests start once.
# A fresh test host that replaces a wedged one carries the same HYVE_SHARD: the modules its
# shard claimed are still its own (their finished tests are already left out, see above).
_CLAIMS = os.environ.get("HYVE_CLAIMS")
_SHARD = os.environ.get("HYVE_SHARD", "1")
_mine = {}
# The longest modules go first, so that no shard starts one of them when the other is nearly done.
_LONGEST_FIRST = ["test_virtio_net.py", "test_uefi_iso.py", "test_reset.py", "test_ahci.py", "test_uefi.py",
                  "test_uefi_testhost.py", "test_fbuf.py", "test_reset_firmware.py"]


def _claim(module):
    """True if this shard runs module: it claimed it now or, in an earlier test host, before."""
    if module not in _mine:
        folder = os.path.join(_CLAIMS, module.replace("/", "_"))
        try:
            os.mkdir(folder)
            _append_durably(os.path.join(folder, "shard"), _SHARD + "\n")
            _mine[module] = True
        except FileExistsError:
            try:
                with open(os.path.join(folder, "shard")) as f:
                    _mine[module] = f.read().strip() == _SHARD
            except FileNotFoundError:   # claimed this instant by the other shard
                _mine[module] = False
    return _mine[module]


def _longest_first(items):
    rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].rsplit("/", 1)[-1], len(rank)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    """Passes over (returns True: handled) the tests of a module the other shard runs."""
    if _CLAIMS and not _claim(item.nodeid.split("::")[0]):
        return True
    return None
