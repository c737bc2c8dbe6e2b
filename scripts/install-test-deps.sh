#!/usr/bin/env bash
# Installs the Debian packages the integration tests drive as real peers:
# eapol_test (eapoltest), certmonger + dbus (dbus-run-session), micromdm scep
# (scepclient/scepserver), promtool (prometheus), hostapd (wired NAS harness), openssl,
# postgresql (a real server the store tests start as the postgres user), freeradius
# (a reference EAP-TLS server for `certgate test-auth`; started by the test on a free port),
# rsyslog + rsyslog-openssl (a real syslog receiver for the [audit] syslog transport, udp/tcp/tls),
# radsecproxy (a real RadSec client: UDP in, RADIUS over TLS out to certgate's [radsec]),
# strongswan-pki + libstrongswan-extra-plugins + libstrongswan-standard-plugins (`pki --scep` /
# `--scepca`, a third SCEP client: its HTTP fetcher is the curl plugin of the extra plugins,
# ECDSA (certgate's default EC root and intermediates) the openssl plugin of the standard ones).
# Only acts when something is missing; needs root (or sudo) to install.
set -euo pipefail
need=()
command -v eapol_test >/dev/null || need+=(eapoltest)
command -v certmonger >/dev/null || need+=(certmonger)
command -v dbus-run-session >/dev/null || need+=(dbus dbus-daemon)
command -v scepclient >/dev/null || need+=(scep)
command -v promtool >/dev/null || need+=(prometheus)
command -v hostapd >/dev/null || need+=(hostapd)
command -v wpa_supplicant >/dev/null || need+=(wpasupplicant)
command -v openssl >/dev/null || need+=(openssl)
command -v ip >/dev/null || need+=(iproute2)
command -v freeradius >/dev/null || need+=(freeradius)
{ command -v rsyslogd || [ -x /usr/sbin/rsyslogd ]; } >/dev/null || need+=(rsyslog)
compgen -G '/usr/lib/*/rsyslog/lmnsd_ossl.so' >/dev/null || need+=(rsyslog-openssl)
{ command -v radsecproxy || [ -x /usr/sbin/radsecproxy ]; } >/dev/null || need+=(radsecproxy)
{ pki --help 2>&1 | grep -q strongSwan; } || need+=(strongswan-pki)
compgen -G '/usr/lib/ipsec/plugins/libstrongswan-curl.so' >/dev/null || need+=(libstrongswan-extra-plugins)
compgen -G '/usr/lib/ipsec/plugins/libstrongswan-openssl.so' >/dev/null || need+=(libstrongswan-standard-plugins)
# PostgreSQL server binaries (initdb, pg_ctl) for the multi-node store tests
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else
    echo "install-test-deps: missing ${need[*]} and not root: integration tests needing them will skip" >&2
    exit 0
  fi
else SUDO=""; fi
export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing ${need[*]}" >&2
$SUDO apt-get update -qq >/dev/null
# policy-rc.d may deny service start; packages install fine without starting daemons
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Packaged daemons the tests start themselves on free ports (freeradius would take 1812 from
# the tests and a local certgate, radsecproxy 1812 and 2083; rsyslogd runs as the test's
# child): stop and disable them.
no_service() {
  printf '%s\n' "${need[@]}" | grep -qx "$1" || return 0
  if [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now "$1" >/dev/null 2>&1 || true
  elif command -v update-rc.d >/dev/null; then
    $SUDO service "$1" stop >/dev/null 2>&1 || true
    $SUDO update-rc.d "$1" disable >/dev/null 2>&1 || true
  fi
}
no_service freeradius
no_service rsyslog
no_service radsecproxy
