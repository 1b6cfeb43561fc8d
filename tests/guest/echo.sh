#!/bin/sh
# Serial console round trip: answers every line with ECHO:<line> until the line "quit".
# Terminal echo is off so the host reads back only the answers.
stty -echo 2>/dev/null
echo "ECHO-READY"
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ "$line" = quit ] && break
  echo "ECHO:$line"
done
stty echo 2>/dev/null
