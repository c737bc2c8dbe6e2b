#!/usr/bin/env bash
# (Copy of shared/peer/freeradius/stop.sh from the 2026-11-21 harness, unchanged, so bench/ is self-contained.)
# stop.sh [WORKDIR] - stop the FreeRADIUS started by start.sh (default WORKDIR
# /tmp/peer-freeradius). Only the PID recorded in WORKDIR/freeradius.pid is
# signalled, and only if its command line is freeradius with our raddb.
# Exit: 0 stopped (or was not running), 1 could not stop.
set -u
work="${1:-/tmp/peer-freeradius}"
pidf="$work/freeradius.pid"
[ -f "$pidf" ] || exit 0
pid="$(cat "$pidf")"
if ! kill -0 "$pid" 2>/dev/null; then rm -f "$pidf"; exit 0; fi
cmd="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true)"
case "$cmd" in
  *freeradius*"$work/raddb"*) ;;
  *) echo "stop.sh: pid $pid is not our freeradius ($cmd); not killing" >&2; exit 1 ;;
esac
kill -TERM "$pid" 2>/dev/null
for _ in $(seq 1 50); do
  kill -0 "$pid" 2>/dev/null || { rm -f "$pidf"; exit 0; }
  sleep 0.1
done
kill -KILL "$pid" 2>/dev/null
sleep 0.2
kill -0 "$pid" 2>/dev/null && { echo "stop.sh: pid $pid still alive" >&2; exit 1; }
rm -f "$pidf"
exit 0
