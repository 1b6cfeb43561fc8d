#!/bin/sh
# Prints COUNTER n every 0.2 s forever: a snapshot restored later must continue the sequence.
n=0
while :; do
  echo "COUNTER $n"
  n=$((n + 1))
  sleep 0.2
done
