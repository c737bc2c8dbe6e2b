#!/usr/bin/env bash
# (Copy of shared/peer/freeradius/start.sh from the 2026-11-21 harness, unchanged, so bench/ is self-contained.)
# start.sh - run FreeRADIUS 3.x as an EAP-TLS-only reference peer, in the background.
#
# Usage: start.sh [options] PKI_DIR        (PKI_DIR made by ../mkpki.sh)
#   -p PORT      UDP auth port (default 18121)
#   -a ADDR      listen address (default 127.0.0.1)
#   -c CLIENT    RADIUS client (NAS) address allowed (default 127.0.0.1)
#   -s SECRET    shared secret (default testing123)
#   -w WORKDIR   state dir: raddb copy, pid file, logs (default /tmp/peer-freeradius)
#   -X           debug mode (freeradius -X: single-threaded, full debug in WORKDIR/console.log)
#   --tls-min V  1.2|1.3 (default 1.2)
#   --tls-max V  1.2|1.3 (default 1.3)
#   --frag N     EAP-TLS fragment_size (default 1024, FreeRADIUS default)
#   --threads N  thread pool start_servers=max_servers=N (default: stock 5..32)
#   --reject-delay S  security.reject_delay (default 0 here; stock FreeRADIUS is 1)
#
# Copies /etc/freeradius/3.0 to WORKDIR/raddb and patches the copy (nothing in
# /etc is modified): runs as the invoking user (user/group lines removed), keeps
# only the modules it needs, replaces the sites with one EAP-TLS auth listener.
# Prints the server PID on stdout. Exit: 0 listening, 1 failed (config check or
# start; see WORKDIR/console.log), 2 usage, 3 already running in WORKDIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

port=18121 addr=127.0.0.1 client=127.0.0.1 secret=testing123
work=/tmp/peer-freeradius debug=0 tlsmin=1.2 tlsmax=1.3 frag=1024 threads="" rdelay=0
pki=""
usage() { sed -n '2,17p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    -p) port="$2"; shift ;;
    -a) addr="$2"; shift ;;
    -c) client="$2"; shift ;;
    -s) secret="$2"; shift ;;
    -w) work="$2"; shift ;;
    -X) debug=1 ;;
    --tls-min) tlsmin="$2"; shift ;;
    --tls-max) tlsmax="$2"; shift ;;
    --frag) frag="$2"; shift ;;
    --threads) threads="$2"; shift ;;
    --reject-delay) rdelay="$2"; shift ;;
    -h|--help) usage ;;
    -*) echo "start.sh: unknown option $1" >&2; usage ;;
    *) pki="$1" ;;
  esac
  shift
done
[ -n "$pki" ] && [ -f "$pki/server.key" ] || { echo "start.sh: PKI_DIR missing or not a mkpki.sh output" >&2; usage; }
pki="$(cd "$pki" && pwd)"
src=/etc/freeradius/3.0
[ -d "$src" ] || { echo "start.sh: $src not found (apt-get install freeradius)" >&2; exit 1; }

mkdir -p "$work"
work="$(cd "$work" && pwd)"
pidf="$work/freeradius.pid"
if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then
  echo "start.sh: already running (pid $(cat "$pidf"), $work)" >&2; exit 3
fi
rm -rf "$work/raddb" "$work/log" "$work/run"
mkdir -p "$work/log" "$work/run"
cp -a "$src" "$work/raddb"
rd="$work/raddb"

# --- radiusd.conf: paths into WORKDIR, no privilege drop ---------------------
sed -i \
  -e "s|^raddbdir = .*|raddbdir = $rd|" \
  -e "s|^logdir = .*|logdir = $work/log|" \
  -e "s|^run_dir = .*|run_dir = $work/run|" \
  -e "s|^\(\s*\)user = freerad|\1#user = freerad|" \
  -e "s|^\(\s*\)group = freerad|\1#group = freerad|" \
  -e "s|^\(\s*\)reject_delay = .*|\1reject_delay = $rdelay|" \
  "$rd/radiusd.conf"
if [ -n "$threads" ]; then
  sed -i -e "s|^\(\s*\)start_servers = .*|\1start_servers = $threads|" \
         -e "s|^\(\s*\)max_servers = .*|\1max_servers = $threads|" \
         -e "s|^\(\s*\)min_spare_servers = .*|\1min_spare_servers = 0|" \
         -e "s|^\(\s*\)max_spare_servers = .*|\1max_spare_servers = $threads|" "$rd/radiusd.conf"
fi

# --- modules: only what the EAP-TLS site uses --------------------------------
find "$rd/mods-enabled" -mindepth 1 -delete
ln -s ../mods-available/always      "$rd/mods-enabled/always"
ln -s ../mods-available/attr_filter "$rd/mods-enabled/attr_filter"
ln -s ../mods-available/expr        "$rd/mods-enabled/expr"
sed -e "s|@PKI@|$pki|g" -e "s|@TLSMIN@|$tlsmin|" -e "s|@TLSMAX@|$tlsmax|" -e "s|@FRAG@|$frag|" \
  "$here/eap.tmpl" > "$rd/mods-enabled/eap"

# --- sites + clients ----------------------------------------------------------
find "$rd/sites-enabled" -mindepth 1 -delete
sed -e "s|@ADDR@|$addr|" -e "s|@PORT@|$port|" "$here/site.tmpl" > "$rd/sites-enabled/eaptls"
sed -e "s|@CLIENT@|$client|" -e "s|@SECRET@|$secret|" "$here/clients.tmpl" > "$rd/clients.conf"

# --- config check, then start --------------------------------------------------
if ! freeradius -C -d "$rd" > "$work/configcheck.log" 2>&1; then
  echo "start.sh: config check failed, see $work/configcheck.log" >&2
  tail -5 "$work/configcheck.log" >&2
  exit 1
fi
if [ "$debug" = 1 ]; then
  nohup freeradius -X -d "$rd" </dev/null >"$work/console.log" 2>&1 &
else
  nohup freeradius -f -d "$rd" -l "$work/log/radius.log" </dev/null >"$work/console.log" 2>&1 &
fi
pid=$!
echo "$pid" > "$pidf"

# wait until the UDP port is bound by our process
hexport=$(printf '%04X' "$port")
for _ in $(seq 1 100); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "start.sh: freeradius exited, see $work/console.log $work/log/radius.log" >&2
    tail -5 "$work/console.log" >&2 || true
    rm -f "$pidf"; exit 1
  fi
  if awk -v p=":$hexport" 'NR>1 && index($2,p) && $4=="07"{f=1} END{exit !f}' /proc/net/udp 2>/dev/null; then
    echo "$pid"; exit 0
  fi
  sleep 0.1
done
echo "start.sh: port $port not bound after 10s" >&2
kill "$pid" 2>/dev/null || true
rm -f "$pidf"
exit 1
