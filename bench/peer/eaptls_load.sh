#!/usr/bin/env bash
# eaptls_load.sh - EAP-TLS authentication throughput with real eapol_test clients.
# (Copied from shared/peer/eaptls_load.sh, harness of 2026-11-21, so certgate's bench is
#  self-contained. Only change: the --domain option. The original does not pin the server
#  name, so it works as is against certgate's radius.certgate.test certificate.)
#
# Usage: eaptls_load.sh [options] HOST PORT SECRET PKI_DIR SECONDS CONCURRENCY [SERVER_PID]
#   --tls 1.2|1.3     TLS version forced on the client (default 1.2)
#   --case NAME       client cert from PKI_DIR/clients (default staff-ok)
#   --mode fresh|reauth
#        fresh  (default) every auth is a new `eapol_test -r 0` process: a full
#               handshake by construction (new process = empty session cache),
#               no pacing; costs one process start per auth on the client side.
#        reauth one `eapol_test -r N` per worker batch. wpa_supplicant 2.10 offers
#               resumption on re-auth (it keeps the SSL session) and eapol_test
#               sleeps a hard-coded 100 ms between re-auths, so a worker does at most
#               ~9 auths/s. Resumed handshakes are counted ("resumed=") from the
#               "Handshake finished - resumed=1" debug lines.
#   --batch N         re-auths per eapol_test process in reauth mode (default 20)
#   --max N           stop after N auth attempts in total (default 1000000)
#   --timeout S       eapol_test -t per auth (fresh) / added to the batch budget (default 10)
#   --domain NAME     also check the server certificate name (domain_suffix_match=NAME,
#                     e.g. radius.certgate.test for certgate, radius.test for mkpki.sh);
#                     default: no name check, as in the original
#   SERVER_PID        optional: server process; its utime+stime from /proc/PID/stat
#                     (all threads) is sampled before/after to give CPU-ms per auth.
#
# Runs for about SECONDS (a running auth is allowed to finish, each is bounded by
# --timeout), then prints ONE key=value line:
#   mode tls case conc secs ok fail resumed auths_per_s lat_p50_ms lat_p95_ms lat_max_ms
#   client_cpu_s client_cpu_ms_per_auth server_cpu_s server_cpu_ms_per_auth host_busy_pct
# (latencies are wall ms per successful auth incl. eapol_test start; "-" in reauth mode)
# client_cpu = CPU of this script and all its children (eapol_test processes);
# host_busy_pct = busy share of all CPUs over the run (from /proc/stat).
# Exit: 0 ok>0 and no failures and nothing resumed; 1 some failures; 3 no success;
#       4 resumed handshakes seen (numbers are not full-handshake numbers); 2 usage.
set -uo pipefail

tlsv=1.2 case_=staff-ok mode=fresh batch=20 max=1000000 timeout=10 domain=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tls) tlsv="$2"; shift ;;
    --case) case_="$2"; shift ;;
    --mode) mode="$2"; shift ;;
    --batch) batch="$2"; shift ;;
    --max) max="$2"; shift ;;
    --timeout) timeout="$2"; shift ;;
    --domain) domain="$2"; shift ;;
    -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
    -*) echo "eaptls_load.sh: unknown option $1" >&2; exit 2 ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ ${#args[@]} -lt 6 ] || [ ${#args[@]} -gt 7 ]; then
  echo "usage: eaptls_load.sh [--tls 1.2|1.3] [--domain NAME] [--case NAME] [--mode fresh|reauth] [--batch N] [--max N] [--timeout S] HOST PORT SECRET PKI_DIR SECONDS CONCURRENCY [SERVER_PID]" >&2
  exit 2
fi
host="${args[0]}" port="${args[1]}" secret="${args[2]}" pki="${args[3]}" secs="${args[4]}" conc="${args[5]}" spid="${args[6]:-}"
[ -f "$pki/clients/$case_.key" ] || { echo "eaptls_load.sh: no client $case_ in $pki" >&2; exit 2; }
pki="$(cd "$pki" && pwd)"
case "$mode" in fresh|reauth) ;; *) echo "eaptls_load.sh: bad --mode" >&2; exit 2 ;; esac
case "$tlsv" in 1.2|1.3) ;; *) echo "eaptls_load.sh: bad --tls" >&2; exit 2 ;; esac
[[ "$secs" =~ ^[0-9]+$ && "$conc" =~ ^[0-9]+$ && "$conc" -ge 1 ]] || { echo "eaptls_load.sh: SECONDS/CONCURRENCY must be integers" >&2; exit 2; }
if [ -n "$spid" ] && [ ! -r "/proc/$spid/stat" ]; then echo "eaptls_load.sh: no process $spid" >&2; exit 2; fi
command -v eapol_test >/dev/null || { echo "eaptls_load.sh: eapol_test missing" >&2; exit 2; }

tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
if [ "$tlsv" = 1.3 ]; then p1="tls_disable_tlsv1_0=1 tls_disable_tlsv1_1=1 tls_disable_tlsv1_2=1 tls_disable_tlsv1_3=0"
else p1="tls_disable_tlsv1_0=1 tls_disable_tlsv1_1=1 tls_disable_tlsv1_2=0 tls_disable_tlsv1_3=1"; fi
cat > "$tmp/client.conf" <<EOF
network={
	key_mgmt=WPA-EAP
	eap=TLS
	identity="$case_@example.test"
	ca_cert="$pki/root.crt"
	client_cert="$pki/clients/$case_.chain.pem"
	private_key="$pki/clients/$case_.key"
	phase1="$p1"
${domain:+	domain_suffix_match=\"$domain\"}
}
EOF

hz=$(getconf CLK_TCK)
proc_cpu() { # utime+stime ticks of PID (fields after the ")" of comm)
  local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }; set -- $s; echo $(( ${12} + ${13} ))
}
self_children_cpu() { local s; s=$(cat /proc/$$/stat); s=${s##*) }; set -- $s; echo $(( ${12} + ${13} + ${14} + ${15} )); }
host_cpu() { # prints "busy total" jiffies
  local _c u n s i w q sq st; read -r _c u n s i w q sq st _ < /proc/stat
  echo "$((u+n+s+q+sq+st)) $((u+n+s+i+w+q+sq+st))"
}
us_now() { local t=$EPOCHREALTIME; echo $(( ${t%.*}*1000000 + 10#${t#*.} )); }

per_worker_max=$(( (max + conc - 1) / conc ))
start_us=$(us_now)
deadline=$(( start_us + secs*1000000 ))

worker() {
  local w=$1 ok=0 fail=0 resumed=0 n=0 t0 t1 mac rem r out per_us=150000
  mac=$(printf '02:00:00:00:%02x:01' $((w % 256)))
  exec 3>"$tmp/lat.$w"
  while :; do
    t0=$(us_now)
    [ "$t0" -ge "$deadline" ] && break
    [ "$n" -ge "$per_worker_max" ] && break
    if [ "$mode" = fresh ]; then
      if eapol_test -c "$tmp/client.conf" -a "$host" -p "$port" -s "$secret" -r 0 -t "$timeout" -M "$mac" >/dev/null 2>&1
      then ok=$((ok+1)); t1=$(us_now); echo $(( (t1-t0)/1000 )) >&3
      else fail=$((fail+1)); fi
      n=$((n+1))
    else
      # how many auths fit in the remaining time (eapol_test sleeps 100 ms between
      # re-auths; per_us adapts to the measured per-auth time of the previous batch)
      rem=$(( (deadline - t0) / per_us )); [ "$rem" -lt 1 ] && rem=1
      r=$batch; [ "$rem" -lt "$r" ] && r=$rem
      [ $((per_worker_max - n)) -lt "$r" ] && r=$((per_worker_max - n))
      out=$(eapol_test -c "$tmp/client.conf" -a "$host" -p "$port" -s "$secret" -r $((r-1)) \
              -t $(( r/5 + timeout )) -M "$mac" 2>&1 | awk '
              /Handshake finished - resumed=1/ {res++}
              /^MPPE keys OK:/ {okc=$4; mis=$6}
              END {printf "%d %d %d\n", okc, mis, res}')
      set -- $out
      ok=$((ok + $1)); fail=$((fail + r - $1)); resumed=$((resumed + $3)); n=$((n + r))
      t1=$(us_now); per_us=$(( (t1 - t0) / r )); [ "$per_us" -lt 100000 ] && per_us=100000
    fi
  done
  exec 3>&-
  echo "$ok $fail $resumed" > "$tmp/res.$w"
}

cpu0_self=$(self_children_cpu)
read -r hb0 ht0 < <(host_cpu)
[ -n "$spid" ] && scpu0=$(proc_cpu "$spid")
for w in $(seq 1 "$conc"); do worker "$w" & done
wait
end_us=$(us_now)
[ -n "$spid" ] && scpu1=$(proc_cpu "$spid")
read -r hb1 ht1 < <(host_cpu)
cpu1_self=$(self_children_cpu)

ok=0 fail=0 resumed=0
for w in $(seq 1 "$conc"); do
  read -r a b c < "$tmp/res.$w" || { a=0; b=1; c=0; }
  ok=$((ok+a)); fail=$((fail+b)); resumed=$((resumed+c))
done
lat=$(cat "$tmp"/lat.* 2>/dev/null | sort -n | awk '{v[NR]=$1} END {
  if (NR==0) {print "- - -"; exit}
  i50=int(NR*0.50); if(i50<1)i50=1; i95=int(NR*0.95); if(i95<1)i95=1
  print v[i50], v[i95], v[NR]}')
read -r p50 p95 pmax <<<"$lat"
# reauth mode: per-auth latency is not observable (batched, 100 ms pacing)

awk -v mode="$mode" -v tls="$tlsv" -v c="$case_" -v conc="$conc" -v us="$((end_us-start_us))" \
    -v ok="$ok" -v fail="$fail" -v res="$resumed" -v p50="$p50" -v p95="$p95" -v pmax="$pmax" \
    -v hz="$hz" -v cc=$((cpu1_self-cpu0_self)) -v sc="${scpu1:-x}" -v sc0="${scpu0:-x}" \
    -v hb=$((hb1-hb0)) -v ht=$((ht1-ht0)) 'BEGIN {
  s = us/1e6; rate = (s>0) ? ok/s : 0
  ccs = cc/hz; ccpa = (ok>0) ? ccs*1000/ok : 0
  if (sc == "x") { scs = "-"; scpa = "-" } else { scs = sprintf("%.2f", (sc-sc0)/hz); scpa = (ok>0) ? sprintf("%.2f", (sc-sc0)/hz*1000/ok) : "-" }
  busy = (ht>0) ? 100*hb/ht : 0
  printf "mode=%s tls=%s case=%s conc=%d secs=%.2f ok=%d fail=%d resumed=%d auths_per_s=%.1f lat_p50_ms=%s lat_p95_ms=%s lat_max_ms=%s client_cpu_s=%.2f client_cpu_ms_per_auth=%.2f server_cpu_s=%s server_cpu_ms_per_auth=%s host_busy_pct=%.0f\n",
    mode, tls, c, conc, s, ok, fail, res, rate, p50, p95, pmax, ccs, ccpa, scs, scpa, busy }'

[ "$ok" -gt 0 ] || exit 3
[ "$fail" -eq 0 ] || exit 1
[ "$resumed" -eq 0 ] || exit 4
exit 0
