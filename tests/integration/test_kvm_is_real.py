"""The integration suite must run on real hardware-assisted KVM, never on kvm_pvm.

kvm_pvm (the development machines' software /dev/kvm) cannot boot Linux, so a suite that
silently ran there would prove nothing; tests/testhost/run is what provides real KVM.
"""
import fcntl
import os

KVM_GET_API_VERSION = 0xAE00
KVM_CHECK_EXTENSION = 0xAE03
KVM_CAP_IRQCHIP = 0


def test_dev_kvm_is_hardware_kvm():
    assert os.path.exists("/dev/kvm"), "no /dev/kvm: run the suite through tests/testhost/run"
    assert not os.path.exists("/sys/module/kvm_pvm"), "/dev/kvm is kvm_pvm (software), not hardware KVM"
    vendor = [m for m in ("kvm_amd", "kvm_intel") if os.path.exists(f"/sys/module/{m}")]
    assert vendor, "neither kvm_amd nor kvm_intel is loaded"


def test_dev_kvm_answers():
    fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        assert fcntl.ioctl(fd, KVM_GET_API_VERSION) == 12
        assert fcntl.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) > 0
    finally:
        os.close(fd)
