#!/usr/bin/env bash
# radius_load.sh - certgate vs FreeRADIUS: EAP-TLS throughput and server CPU per auth,
# with real eapol_test clients, in one run on one machine.
#
# Usage: bench/radius_load.sh [options]
#   -s SECS            seconds per load point (default 8, at most 10)
#   -c "2 4"           fresh-mode concurrencies (default "2 4")
#   --reauth-conc N    reauth-mode concurrency (default 32, 0 = skip)
#   --tls "1.2 1.3"    TLS versions (default both)
#   --out DIR          results directory (default: a new /tmp/certgate-bench-out.XXXXXX)
#   --frag N           EAP-TLS fragment_size for both servers (default: each server's
#                      default, 1024 for both; eapol_test's Framed-MTU 1400 allows 1390)
#   --no-freeradius    certgate only (also the default when freeradius is not installed)
#   --storage-url URL  certgate on PostgreSQL: `[storage] url = URL` (an empty, existing
#                      database; default: SQLite in the temp dir)
#   --profile FILE     run certgate under bench/profile_serve.py (cProfile, CPU clock);
#                      CPU figures are then inflated by the profiler: proportions only
#   --key ec-p256|rsa2048
#                      key type of every certificate of both PKIs (default ec-p256):
#                      root, group intermediates, RADIUS server and client certificates.
#                      rsa2048: certgate `[pki] key_type = "rsa-2048"` + `certs issue
#                      --key-type rsa-2048`, FreeRADIUS `peer/mkpki.sh --rsa`; same shape
#   --keep             keep the work directory (configs, PKIs, server logs)
#
# What it does (everything on 127.0.0.1, temp dirs only, nothing under /etc touched):
#  1. certgate: writes a config (groups staff/guests, RADIUS client 127.0.0.0/8, secret
#     testing123, fresh ports), `certgate init`, `certgate certs issue --group staff
#     --cn staff-ok`, and lays out PKI_DIR the way eaptls_load.sh expects it
#     (root.crt, clients/staff-ok.{crt,key,chain.pem}); starts `certgate serve` and
#     waits for /readyz. Server certificate: radius.certgate.test, ECDSA P-256
#     (RSA-2048 with --key rsa2048).
#  2. FreeRADIUS 3.2 (if installed): bench/peer/mkpki.sh --ec (--rsa), bench/peer/freeradius/
#     start.sh (copies of the shared/peer harness). Server certificate: radius.test.
#  3. For each TLS version and each point (fresh c=2, fresh c=4, reauth c=32) runs
#     bench/peer/eaptls_load.sh against certgate and then, right after, FreeRADIUS, so both
#     see the same background load. --domain pins each server's certificate name.
#  4. Stops both servers by PID, prints OUT/load.txt and a markdown table (OUT/table.md).
# Exit: 0 every load point exited 0; 1 otherwise; 2 usage/setup error.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
certgate="${CERTGATE:-$repo/.venv/bin/certgate}"
secs=8 concs="2 4" rconc=32 tlsvs="1.2 1.3" out="" use_fr=1 profile="" keep=0 frag=""
storage_url="" key=ec-p256
secret=testing123
while [ $# -gt 0 ]; do
  case "$1" in
    -s) secs="$2"; shift ;;
    -c) concs="$2"; shift ;;
    --reauth-conc) rconc="$2"; shift ;;
    --tls) tlsvs="$2"; shift ;;
    --out) out="$2"; shift ;;
    --frag) frag="$2"; shift ;;
    --no-freeradius) use_fr=0 ;;
    --storage-url) storage_url="$2"; shift ;;
    --profile) profile="$2"; shift ;;
    --key) key="$2"; shift ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    *) echo "radius_load.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$key" in
  ec-p256) cg_key=ec-p256 mk_key=--ec ;;
  rsa2048|rsa-2048) key=rsa2048 cg_key=rsa-2048 mk_key=--rsa ;;
  *) echo "radius_load.sh: --key must be ec-p256 or rsa2048" >&2; exit 2 ;;
esac
[[ "$secs" =~ ^[0-9]+$ && "$secs" -ge 1 && "$secs" -le 10 ]] || { echo "radius_load.sh: -s must be 1..10" >&2; exit 2; }
command -v eapol_test >/dev/null || { echo "radius_load.sh: eapol_test missing (apt-get install eapoltest)" >&2; exit 2; }
[ -x "$py" ] && [ -x "$certgate" ] || { echo "radius_load.sh: no $py / $certgate (make venv)" >&2; exit 2; }
if [ "$use_fr" = 1 ] && ! { command -v freeradius >/dev/null && [ -d /etc/freeradius/3.0 ]; }; then
  echo "radius_load.sh: freeradius not installed, certgate only (apt-get install freeradius)" >&2
  use_fr=0
fi

work="$(mktemp -d /tmp/certgate-bench.XXXXXX)"
[ -n "$out" ] || out="$(mktemp -d /tmp/certgate-bench-out.XXXXXX)"
mkdir -p "$out"; out="$(cd "$out" && pwd)"
: > "$out/load.txt"
cg_pid="" fr_work="$work/freeradius"
cleanup() {
  if [ -n "$cg_pid" ] && kill -0 "$cg_pid" 2>/dev/null; then
    kill -TERM "$cg_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$cg_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$cg_pid" 2>/dev/null && kill -KILL "$cg_pid" 2>/dev/null
  fi
  [ "$use_fr" = 1 ] && "$here/peer/freeradius/stop.sh" "$fr_work" >/dev/null 2>&1
  if [ "$keep" = 1 ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

read -r cg_port acct_port coa_port http_port fr_port < <("$py" - <<'PY'
import socket
socks, ports = [], []
for kind in (socket.SOCK_DGRAM,) * 3 + (socket.SOCK_STREAM, socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind); s.bind(("127.0.0.1", 0)); socks.append(s)
    ports.append(s.getsockname()[1])
print(*ports)
PY
)

# --- certgate instance -------------------------------------------------------
cg="$work/certgate"
mkdir -p "$cg"
cat > "$cg/certgate.toml" <<EOF
[server]
data_dir = "var"

[radius]
listen = "127.0.0.1:$cg_port"
acct_listen = "127.0.0.1:$acct_port"
${frag:+fragment_size = $frag}

[[radius.clients]]
name = "loopback"
address = "127.0.0.0/8"
secret = "$secret"
coa_port = $coa_port

[pki]
key_type = "$cg_key"

[http]
listen = "127.0.0.1:$http_port"
public_url = "http://127.0.0.1:$http_port"

[admin]
tokens = ["bench-admin-token-0123456789"]
webhook_secret = "bench-webhook-secret-0123456789"

[groups.staff]
vlan = 10
class = "staff"
filter_id = "staff-acl"
validity_days = 365

[groups.guests]
vlan = 20
validity_days = 30
session_timeout = 28800
EOF
if [ -n "$storage_url" ]; then
  printf '\n[storage]\nurl = "%s"\n' "$storage_url" >> "$cg/certgate.toml"
fi
"$certgate" --config "$cg/certgate.toml" init > "$cg/init.log" 2>&1 \
  || { echo "radius_load.sh: certgate init failed:" >&2; tail -5 "$cg/init.log" >&2; exit 2; }
"$certgate" --config "$cg/certgate.toml" certs issue --group staff --cn staff-ok \
    --out "$cg/issued" --san email:staff-ok@example.test --key-type "$cg_key" > "$cg/issue.log" 2>&1 \
  || { echo "radius_load.sh: certs issue failed:" >&2; tail -5 "$cg/issue.log" >&2; exit 2; }
cg_pki="$cg/pki"   # the mkpki.sh layout eaptls_load.sh reads
mkdir -p "$cg_pki/clients"
cp "$cg/var/pki/root.crt" "$cg_pki/root.crt"
for ext in crt key chain.pem; do cp "$cg/issued/staff-ok.$ext" "$cg_pki/clients/staff-ok.$ext"; done

if [ -n "$profile" ]; then
  "$py" "$here/profile_serve.py" --config "$cg/certgate.toml" --out "$profile" \
    > "$cg/serve.log" 2>&1 &
else
  "$certgate" --config "$cg/certgate.toml" serve > "$cg/serve.log" 2>&1 &
fi
cg_pid=$!
ready=0
for _ in $(seq 1 200); do
  kill -0 "$cg_pid" 2>/dev/null || break
  if "$py" -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:$http_port/readyz', timeout=1).status != 200)" 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "radius_load.sh: certgate serve not ready:" >&2; tail -20 "$cg/serve.log" >&2; exit 2; }
store_kind=sqlite; [ -n "$storage_url" ] && store_kind=postgresql
echo "certgate serve pid $cg_pid on 127.0.0.1:$cg_port ($("$certgate" --version 2>/dev/null || echo certgate), store $store_kind, keys $key)" >&2

# --- FreeRADIUS (reference) ----------------------------------------------------
fr_pid=""
if [ "$use_fr" = 1 ]; then
  "$here/peer/mkpki.sh" "$mk_key" --force "$work/fr-pki" > "$work/mkpki.log" 2>&1 \
    || { echo "radius_load.sh: mkpki.sh failed" >&2; tail -5 "$work/mkpki.log" >&2; exit 2; }
  fr_pid=$("$here/peer/freeradius/start.sh" -p "$fr_port" -s "$secret" -w "$fr_work" \
             ${frag:+--frag "$frag"} "$work/fr-pki") \
    || { echo "radius_load.sh: freeradius start failed" >&2; exit 2; }
  echo "freeradius pid $fr_pid on 127.0.0.1:$fr_port ($(freeradius -v 2>/dev/null | head -1), keys $key)" >&2
fi

# --- matrix ------------------------------------------------------------------
rc=0
point() { # server port pki domain pid tls mode conc
  local server=$1 port=$2 pki=$3 domain=$4 pid=$5 tls=$6 mode=$7 conc=$8 line code load t0 t1 st
  load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$(date +%s.%N)
  line=$("$here/peer/eaptls_load.sh" --tls "$tls" --mode "$mode" --domain "$domain" \
           127.0.0.1 "$port" "$secret" "$pki" "$secs" "$conc" "$pid")
  code=$?
  t1=$(date +%s.%N)
  [ "$code" = 0 ] || rc=1
  st=""; [ "$server" = certgate ] && st=" store=$store_kind"
  # t_start/t_end (epoch s) let a caller attribute other processes' CPU (the database) to the point
  echo "server=$server key=$key $line loadavg1=$load exit=$code$st t_start=$t0 t_end=$t1" | tee -a "$out/load.txt"
}
for tls in $tlsvs; do
  pts=""
  for c in $concs; do pts="$pts fresh:$c"; done
  [ "$rconc" -gt 0 ] && pts="$pts reauth:$rconc"
  for p in $pts; do
    point certgate "$cg_port" "$cg_pki" radius.certgate.test "$cg_pid" "$tls" "${p%%:*}" "${p##*:}"
    if [ -n "$fr_pid" ]; then
      point freeradius "$fr_port" "$work/fr-pki" radius.test "$fr_pid" "$tls" "${p%%:*}" "${p##*:}"
    fi
  done
done

# --- stop, summarise --------------------------------------------------------------
kill -TERM "$cg_pid" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$cg_pid" 2>/dev/null || break; sleep 0.1; done
grep -c "eap result=accept" "$cg/serve.log" | sed 's/^/certgate accepts logged: /' >&2
[ -n "$profile" ] && grep -v "^20[0-9][0-9]-" "$cg/serve.log" | head -60 > "$out/profile.txt"
"$py" "$here/load_table.py" "$out/load.txt" | tee "$out/table.md"
echo "results: $out/load.txt $out/table.md" >&2
exit $rc
