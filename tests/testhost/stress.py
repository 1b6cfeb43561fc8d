"""Load test of the test host itself: N guests, each with a virtio disk and entropy
device, loop disk writes with fsync and hwrng reads for S seconds; a guest that dies is
rebooted and counted. Prints one line per death and a summary. Run it through the test
host, e.g.:

    HYVE_TESTHOST_CPUS=2 tests/testhost/run /usr/bin/python3 -u tests/testhost/stress.py 240 2

It is how the test host's default of one CPU was chosen (see tests/testhost/run)."""
import os
import pathlib
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from conftest import Guest, boot_args  # noqa: E402

ROUND = ("dd if=/dev/hwrng of=/dev/null bs=4k count=64 2>/dev/null; "
         "dd if=/dev/urandom of=/mnt/f bs=64k count=16 conv=fsync 2>/dev/null; sync")


def load(index, seconds, totals):
    img = os.path.join(os.environ.get("HYVE_RUNDIR", "/tmp"), f"stress{index}.img")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["/usr/sbin/mkfs.ext4", "-q", "-F", "-b", "4096", img], check=True)
    end = time.monotonic() + seconds
    boots = rounds = deaths = 0
    while time.monotonic() < end:
        g = Guest(boot_args("cmd", name=f"stress{index}",
                            extra_args=["-s", f"4,virtio-blk,{img}", "-s", "5,virtio-rnd"]))
        boots += 1
        try:
            g.wait_for("HYVE-CMD-READY", timeout=240)
            g.run("mount -t ext4 /dev/vda /mnt", timeout=60)
            while time.monotonic() < end:
                g.run(ROUND, timeout=120)
                rounds += 1
        except AssertionError as e:
            deaths += 1
            print(f"guest {index}, boot {boots}, after {rounds} rounds: hyve status "
                  f"{g.proc.poll()}: {str(e).splitlines()[0]}", flush=True)
        finally:
            g.kill()
    os.unlink(img)
    totals.append((index, boots, rounds, deaths))


def main():
    seconds, guests = int(sys.argv[1]), int(sys.argv[2])
    totals = []
    threads = [threading.Thread(target=load, args=(i, seconds, totals)) for i in range(guests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for index, boots, rounds, deaths in sorted(totals):
        print(f"guest {index}: {boots} boots, {rounds} rounds, {deaths} deaths")
    sys.exit(1 if any(t[3] for t in totals) or len(totals) < guests else 0)


if __name__ == "__main__":
    main()
