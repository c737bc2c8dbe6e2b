#!/usr/bin/env bash
# freeradius_coa.sh - FreeRADIUS 3.x as a real RFC 5176 Dynamic Authorization server (the NAS
# side of CoA/Disconnect), for tests: `listen { type = coa }` on a loopback port, a recv-coa
# policy that writes every request it receives to a detail file and ACKs it, and NAKs
# (Error-Cause 503 Session-Context-Not-Found) a CoA-Request for one chosen Calling-Station-Id
# (a Disconnect-Request for it is ACKed).
#
# Usage:
#   freeradius_coa.sh start -w DIR -p PORT -s SECRET [-c CLIENT_IP] [--nak-station MAC]
#       copies /etc/freeradius/3.0 to DIR/raddb (nothing in /etc changes), keeps only the coa
#       site and the modules it needs, runs `freeradius -X` in the background as this user.
#       Prints the PID; exit 0 when the port is bound, 1 on failure (DIR/console.log).
#   freeradius_coa.sh stop -w DIR      stops it by its PID file.
# What it received: DIR/log/coa-detail (FreeRADIUS detail format: one block per request,
# `Packet-Type = CoA-Request` / `Disconnect-Request`, then `Attr = value` lines).
set -euo pipefail
cmd="${1:-}"; shift || true
work="" port="" secret="" client=127.0.0.1 nak="none"
while [ $# -gt 0 ]; do
  case "$1" in
    -w) work="$2"; shift ;;
    -p) port="$2"; shift ;;
    -s) secret="$2"; shift ;;
    -c) client="$2"; shift ;;
    --nak-station) nak="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "freeradius_coa.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$work" ] || { echo "freeradius_coa.sh: -w DIR is required" >&2; exit 2; }
mkdir -p "$work"; work="$(cd "$work" && pwd)"
pidf="$work/freeradius.pid"

case "$cmd" in
start)
  [ -n "$port" ] && [ -n "$secret" ] || { echo "start needs -p PORT -s SECRET" >&2; exit 2; }
  src=/etc/freeradius/3.0
  [ -d "$src" ] || { echo "freeradius_coa.sh: $src not found (apt-get install freeradius)" >&2; exit 1; }
  rm -rf "$work/raddb" "$work/log" "$work/run"; mkdir -p "$work/log" "$work/run"
  cp -a "$src" "$work/raddb"; rd="$work/raddb"
  sed -i -e "s|^raddbdir = .*|raddbdir = $rd|" -e "s|^logdir = .*|logdir = $work/log|" \
    -e "s|^run_dir = .*|run_dir = $work/run|" -e "s|^\(\s*\)user = freerad|\1#user = freerad|" \
    -e "s|^\(\s*\)group = freerad|\1#group = freerad|" "$rd/radiusd.conf"
  find "$rd/mods-enabled" "$rd/sites-enabled" -mindepth 1 -delete
  ln -s ../mods-available/always "$rd/mods-enabled/always"
  cat > "$rd/mods-enabled/coa_detail" <<CONF
detail coa_detail {
	filename = $work/log/coa-detail
	escape_filenames = no
	permissions = 0600
	header = "%t"
}
CONF
  cat > "$rd/sites-enabled/coa" <<CONF
listen {
	type = coa
	ipaddr = 127.0.0.1
	port = $port
	virtual_server = coa
}
server coa {
	recv-coa {
		coa_detail
		if ((&Packet-Type == CoA-Request) && (&request:Calling-Station-Id == "$nak")) {
			update reply {
				&Error-Cause := Session-Context-Not-Found
			}
			reject
		}
		ok
	}
	send-coa {
		ok
	}
}
CONF
  cat > "$rd/clients.conf" <<CONF
client certgate {
	ipaddr = $client
	secret = $secret
	require_message_authenticator = no
}
CONF
  if ! freeradius -C -d "$rd" > "$work/configcheck.log" 2>&1; then
    echo "freeradius_coa.sh: config check failed, see $work/configcheck.log" >&2
    tail -5 "$work/configcheck.log" >&2; exit 1
  fi
  nohup freeradius -X -d "$rd" </dev/null >"$work/console.log" 2>&1 &
  pid=$!; echo "$pid" > "$pidf"
  hexport=$(printf '%04X' "$port")
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { echo "freeradius exited: $(tail -3 "$work/console.log")" >&2; rm -f "$pidf"; exit 1; }
    if awk -v p=":$hexport" 'NR>1 && index($2,p) && $4=="07"{f=1} END{exit !f}' /proc/net/udp; then
      echo "$pid"; exit 0
    fi
    sleep 0.1
  done
  echo "freeradius_coa.sh: port $port not bound after 10 s" >&2; kill "$pid" 2>/dev/null || true
  rm -f "$pidf"; exit 1
  ;;
stop)
  if [ -f "$pidf" ]; then kill "$(cat "$pidf")" 2>/dev/null || true; rm -f "$pidf"; fi
  ;;
*) sed -n '2,15p' "$0"; exit 2 ;;
esac
