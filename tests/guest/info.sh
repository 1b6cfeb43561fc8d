#!/bin/sh
# Reports what the guest sees, then stays up until a line arrives on the console, so the host
# can inspect or snapshot a running guest; any input line ends the test.
echo "NCPUS=$(nproc)"
echo "MEMTOTAL_KB=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "EPOCH=$(date +%s)"
echo "INFO-DONE"
read -r _
