"""The xHCI controller with the USB tablet and keyboard: the stock xhci_pci driver binds
to it, usbhid enumerates both devices, the input layer shows an absolute tablet and a
keyboard, and nothing in the kernel log complains."""
import re

from conftest import KERNEL, run_hyve

SLOT = 4


def usb_devices(g):
    """{busdev: (idVendor, idProduct, product)} of /sys/bus/usb/devices (hubs included)."""
    rc, out = g.run("for d in /sys/bus/usb/devices/*; do [ -f $d/idVendor ] && "
                    "echo \"$(basename $d) $(cat $d/idVendor) $(cat $d/idProduct) $(cat $d/product)\"; done")
    assert rc == 0, out
    found = {}
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4:
            found[parts[0]] = tuple(parts[1:])
    return found


def input_devices(g):
    """/proc/bus/input/devices as a list of {letter: [lines]} blocks."""
    rc, out = g.run("cat /proc/bus/input/devices")
    assert rc == 0, out
    blocks = []
    for chunk in out.strip().split("\n\n"):
        block = {}
        for line in chunk.splitlines():
            if len(line) > 3 and line[1] == ":":
                block.setdefault(line[0], []).append(line[3:])
        blocks.append(block)
    return blocks


def bits(block, name):
    for line in block.get("B", []):
        if line.startswith(name + "="):
            words = line.split("=", 1)[1].split()
            return int("".join(w.rjust(16, "0") for w in words), 16)
    return 0


def boot_xhci(boot, opts="tablet,kbd"):
    g = boot("cmd", extra_args=["-s", f"{SLOT},xhci,{opts}"])
    g.wait_for("HYVE-CMD-READY", timeout=300)
    return g


def wait_usb(g, count):
    """Waits (in the guest) until `count` non-hub USB devices are bound to usbhid."""
    rc, out = g.run(f"i=0; while [ $(ls -d /sys/bus/usb/drivers/usbhid/*:* 2>/dev/null | wc -l) -lt {count} ] "
                    f"&& [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; "
                    "ls -d /sys/bus/usb/drivers/usbhid/*:*", timeout=120)
    assert rc == 0 and len(out.split()) == count, out


def test_xhci_enumerates_tablet_and_keyboard(boot):
    g = boot_xhci(boot)
    rc, out = g.run(f"cat /sys/bus/pci/devices/0000:00:0{SLOT}.0/vendor /sys/bus/pci/devices/0000:00:0{SLOT}.0/device "
                    f"/sys/bus/pci/devices/0000:00:0{SLOT}.0/class; "
                    f"basename $(readlink /sys/bus/pci/devices/0000:00:0{SLOT}.0/driver)")
    assert rc == 0 and out.split() == ["0x1b36", "0x000d", "0x0c0330", "xhci_hcd"], out
    wait_usb(g, 2)
    devs = usb_devices(g)
    assert devs.get("1-1") == ("1209", "0001", "hyve USB tablet"), devs
    assert devs.get("1-2") == ("1209", "0002", "hyve USB keyboard"), devs
    # Two root hubs: USB 2.0 (1d6b:0002) and USB 3.0 (1d6b:0003), nothing on the USB 3 ports.
    assert devs.get("usb1", ())[:2] == ("1d6b", "0002") and devs.get("usb2", ())[:2] == ("1d6b", "0003"), devs
    assert len(devs) == 4, devs
    rc, out = g.run("cat /sys/bus/usb/devices/1-1/speed /sys/bus/usb/devices/1-1/bConfigurationValue "
                    "/sys/bus/usb/devices/1-1:1.0/bInterfaceSubClass /sys/bus/usb/devices/1-2:1.0/bInterfaceSubClass "
                    "/sys/bus/usb/devices/1-2:1.0/bInterfaceProtocol")
    assert rc == 0 and out.split() == ["480", "1", "00", "01", "01"], out

    blocks = input_devices(g)
    tablet = [b for b in blocks if any("hyve USB tablet" in n for n in b.get("N", []))]
    kbd = [b for b in blocks if any("hyve USB keyboard" in n for n in b.get("N", []))]
    assert len(tablet) == 1 and len(kbd) == 1, blocks
    abs_bits = bits(tablet[0], "ABS")
    assert abs_bits & 0x3 == 0x3, tablet  # ABS_X, ABS_Y
    rel_bits = bits(tablet[0], "REL")
    assert rel_bits & (1 << 8) and rel_bits & (1 << 6), tablet  # REL_WHEEL, REL_HWHEEL
    key_bits = bits(tablet[0], "KEY")
    for btn in (0x110, 0x111, 0x112, 0x113, 0x114):  # BTN_LEFT .. BTN_EXTRA
        assert key_bits >> btn & 1, (hex(btn), tablet)
    kbd_keys = bits(kbd[0], "KEY")
    for code in (1, 30, 58, 87, 183, 194):  # ESC, A, CAPSLOCK, F11, F13, F24
        assert kbd_keys >> code & 1, (code, kbd)
    assert bits(kbd[0], "LED") & 0x7 == 0x7, kbd

    rc, out = g.run("dmesg")
    assert rc == 0
    bad = [l for l in out.splitlines() if re.search(r"xhci.*(error|fail|timeout|not responding|halt)", l, re.I)
           or re.search(r"usb .*(device descriptor read|not accepting address|unable to enumerate)", l, re.I)]
    assert not bad, "\n".join(bad)
    g.send("poweroff -f\n")
    assert g.wait_exit(60) == 1


def test_xhci_rejects_unknown_option():
    r = run_hyve(["-s", f"{SLOT},xhci,foo", "--kernel", KERNEL, "x"])
    assert r.returncode == 4
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "foo" in r.stderr
