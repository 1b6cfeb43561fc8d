#!/bin/sh
# Command loop for tests: runs each line read from the serial console and
# frames its output, so the host can drive one booted guest through many checks.
stty -echo 2>/dev/null
echo HYVE-CMD-READY
while IFS= read -r line; do
	echo HYVE-CMD-BEGIN
	sh -c "$line" 2>&1
	echo "HYVE-CMD-END rc=$?"
done
