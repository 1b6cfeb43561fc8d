#!/bin/sh
# Input tests: evdump prints every input event (and each input device as it appears) on the
# serial console, while the command loop of cmd.sh runs what the host sends. evdump's lines
# start with "EV " or "DEV ", so the host tells them from command output.
stty -echo 2>/dev/null
evdump &
echo HYVE-CMD-READY
while IFS= read -r line; do
	echo HYVE-CMD-BEGIN
	sh -c "$line" 2>&1
	echo "HYVE-CMD-END rc=$?"
done
