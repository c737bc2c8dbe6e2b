#!/usr/bin/env bash
# (Copy of shared/peer/mkpki.sh from the 2026-11-21 harness, unchanged, so bench/ is self-contained.)
# mkpki.sh - build a throw-away EAP-TLS test PKI with the openssl CLI.
#
# Usage: mkpki.sh [--rsa|--ec] [--server-issuer root|intermediate] [--force] OUTDIR
#
#   --ec        ECDSA P-256 keys, ecdsa-with-SHA256 signatures (default)
#   --rsa       RSA-2048 keys, sha256WithRSAEncryption signatures
#   --server-issuer root          RADIUS server cert signed by the root (default)
#   --server-issuer intermediate  signed by a separate "servers" intermediate;
#                                 server-chain.pem then carries leaf+intermediate
#   --force     wipe OUTDIR first (otherwise OUTDIR must be empty/non-existent)
#
# Output (all PEM, keys unencrypted PKCS#8):
#   root.crt root.key                 trust anchor (client side: eapol_test ca_cert)
#   staff-ca.crt/.key guests-ca.crt/.key   group intermediates (issue client certs)
#   servers-ca.crt/.key               only with --server-issuer intermediate
#   root.crl.pem staff.crl.pem guests.crl.pem   CRLs (staff lists staff-revoked)
#   ca-bundle.pem                     root + staff + guests (server side trust store)
#   crl-bundle.pem                    all CRLs concatenated
#   ca-crl-bundle.pem                 ca-bundle + CRLs (single-file trust store with CRLs)
#   capath/                           root/staff/guests certs + CRLs, `openssl rehash`ed
#   server.crt server.key server-chain.pem   (SAN DNS:radius.test, EKU serverAuth)
#   clients/<case>.crt .key .chain.pem (leaf + issuing intermediate)
#       staff-ok guests-ok staff-revoked staff-expired rogue
#   rogue-root.crt rogue-staff-ca.crt same subject DNs as root/staff, different keys
#   pki.env                           KEYTYPE=ec|rsa SERVER_ISSUER=...
#
# Validity: fixed dates (2024-01-01 .. 2049-12-31) for valid certs so repeated
# runs give identical TBS data except keys/signatures; staff-expired is
# 2020-01-01 .. 2021-01-01. Exit status: 0 ok, 2 usage, 1 openssl failure.
set -euo pipefail

keytype=ec
server_issuer=root
force=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rsa) keytype=rsa ;;
    --ec) keytype=ec ;;
    --server-issuer) shift; server_issuer="${1:-}" ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    -*) echo "mkpki.sh: unknown option $1" >&2; exit 2 ;;
    *) out="$1" ;;
  esac
  shift
done
[ -n "$out" ] || { echo "usage: mkpki.sh [--rsa|--ec] [--server-issuer root|intermediate] [--force] OUTDIR" >&2; exit 2; }
case "$server_issuer" in root|intermediate) ;; *) echo "mkpki.sh: bad --server-issuer" >&2; exit 2 ;; esac

if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  if [ "$force" = 1 ]; then rm -rf "$out"; else echo "mkpki.sh: $out not empty (use --force)" >&2; exit 2; fi
fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
mkdir -p "$out/clients" "$out/capath" "$out/.ca"

START_OK=20240101000000Z
END_OK=20491231235959Z
START_EXP=20200101000000Z
END_EXP=20210101000000Z
DN_BASE="/C=XX/O=Example Test Org"

if [ "$keytype" = ec ]; then EE_KU="critical, digitalSignature"; else EE_KU="critical, digitalSignature, keyEncipherment"; fi

cnf="$out/.ca/openssl.cnf"
cat > "$cnf" <<'EOF'
[ ca ]
default_ca = CA_default
[ CA_default ]
dir             = $ENV::CA_DIR
database        = $dir/index.txt
new_certs_dir   = $dir/newcerts
serial          = $dir/serial
crlnumber       = $dir/crlnumber
certificate     = $ENV::CA_CERT
private_key     = $ENV::CA_KEY
default_md      = sha256
default_crl_days = 3650
policy          = policy_any
unique_subject  = no
copy_extensions = none
email_in_dn     = no
preserve        = yes
[ policy_any ]
countryName            = optional
organizationName       = optional
organizationalUnitName = optional
commonName             = supplied
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ v3_root ]
basicConstraints       = critical, CA:true
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
[ v3_intermediate ]
basicConstraints       = critical, CA:true, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
[ v3_server ]
basicConstraints       = critical, CA:false
keyUsage               = $ENV::EE_KU
extendedKeyUsage       = serverAuth
subjectAltName         = DNS:radius.test
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
[ v3_client ]
basicConstraints       = critical, CA:false
keyUsage               = $ENV::EE_KU
extendedKeyUsage       = clientAuth
subjectAltName         = $ENV::CLIENT_SAN
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
[ crl_ext ]
authorityKeyIdentifier = keyid:always
EOF
export EE_KU CLIENT_SAN="email:unused@example.test"
# openssl parses the whole config for every command: give the $ENV:: vars values
export CA_DIR="$out/.ca" CA_CERT=/dev/null CA_KEY=/dev/null

ossl() { # run openssl quietly; on failure print its output
  local log; log="$(mktemp)"
  if ! openssl "$@" >"$log" 2>&1; then
    echo "mkpki.sh: openssl $1 failed:" >&2; cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
}

genkey() { # genkey FILE
  if [ "$keytype" = ec ]; then
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$1"
  else
    ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"
  fi
  chmod 600 "$1"
}

ca_init() { # ca_init NAME FIRST_SERIAL_HEX
  local d="$out/.ca/$1"
  mkdir -p "$d/newcerts"; : > "$d/index.txt"; echo "$2" > "$d/serial"; echo 1000 > "$d/crlnumber"
}

ca_env() { # ca_env NAME CERT KEY
  export CA_DIR="$out/.ca/$1" CA_CERT="$2" CA_KEY="$3"
}

# sign NAME(ca) CERT KEY  CSR OUTCRT EXT START END
sign() {
  ca_env "$1" "$2" "$3"
  ossl ca -batch -config "$cnf" -notext -in "$4" -out "$5" -extensions "$6" \
       -startdate "$7" -enddate "$8"
}

mkroot() { # mkroot NAME DN  -> $out/NAME.crt/.key (self-signed via openssl ca -selfsign)
  local n="$1" dn="$2"
  genkey "$out/$n.key"
  ca_init "$n" 01
  ossl req -new -config "$cnf" -key "$out/$n.key" -subj "$dn" -out "$out/.ca/$n.csr"
  ca_env "$n" "$out/$n.crt" "$out/$n.key"
  ossl ca -batch -config "$cnf" -notext -selfsign -keyfile "$out/$n.key" -in "$out/.ca/$n.csr" \
       -out "$out/$n.crt" -extensions v3_root -startdate "$START_OK" -enddate "$END_OK"
}

mkint() { # mkint NAME DN ISSUER FIRST_SERIAL -> $out/NAME.crt/.key
  local n="$1" dn="$2" iss="$3"
  genkey "$out/$n.key"
  ca_init "$n" "$4"
  ossl req -new -config "$cnf" -key "$out/$n.key" -subj "$dn" -out "$out/.ca/$n.csr"
  sign "$iss" "$out/$iss.crt" "$out/$iss.key" "$out/.ca/$n.csr" "$out/$n.crt" v3_intermediate "$START_OK" "$END_OK"
}

mkclient() { # mkclient CASE ISSUER GROUP START END
  local c="$1" iss="$2" grp="$3"
  genkey "$out/clients/$c.key"
  ossl req -new -config "$cnf" -key "$out/clients/$c.key" \
       -subj "$DN_BASE/OU=$grp/CN=$c@example.test" -out "$out/.ca/$c.csr"
  CLIENT_SAN="email:$c@example.test"
  sign "$iss" "$out/$iss.crt" "$out/$iss.key" "$out/.ca/$c.csr" "$out/clients/$c.crt" v3_client "$4" "$5"
  cat "$out/clients/$c.crt" "$out/$iss.crt" > "$out/clients/$c.chain.pem"
}

gencrl() { # gencrl CANAME OUTFILE
  ca_env "$1" "$out/$1.crt" "$out/$1.key"
  ossl ca -batch -config "$cnf" -gencrl -crldays 3650 -crlexts crl_ext -out "$2"
}

# --- real hierarchy -------------------------------------------------------
mkroot root "$DN_BASE/CN=Example Test Root CA"
mkint staff-ca  "$DN_BASE/OU=staff/CN=Example Staff CA"   root 1001
mkint guests-ca "$DN_BASE/OU=guests/CN=Example Guests CA" root 1002

# server certificate
if [ "$server_issuer" = root ]; then
  srv_iss=root
else
  mkint servers-ca "$DN_BASE/OU=servers/CN=Example Servers CA" root 1003
  srv_iss=servers-ca
fi
genkey "$out/server.key"
ossl req -new -config "$cnf" -key "$out/server.key" -subj "$DN_BASE/CN=radius.test" -out "$out/.ca/server.csr"
sign "$srv_iss" "$out/$srv_iss.crt" "$out/$srv_iss.key" "$out/.ca/server.csr" "$out/server.crt" v3_server "$START_OK" "$END_OK"
if [ "$srv_iss" = root ]; then cp "$out/server.crt" "$out/server-chain.pem"
else cat "$out/server.crt" "$out/servers-ca.crt" > "$out/server-chain.pem"; fi

# clients
mkclient staff-ok      staff-ca  staff  "$START_OK"  "$END_OK"
mkclient guests-ok     guests-ca guests "$START_OK"  "$END_OK"
mkclient staff-revoked staff-ca  staff  "$START_OK"  "$END_OK"
mkclient staff-expired staff-ca  staff  "$START_EXP" "$END_EXP"

# revoke + CRLs
ca_env staff-ca "$out/staff-ca.crt" "$out/staff-ca.key"
ossl ca -batch -config "$cnf" -revoke "$out/clients/staff-revoked.crt" -crl_reason keyCompromise
gencrl root      "$out/root.crl.pem"
gencrl staff-ca  "$out/staff.crl.pem"
gencrl guests-ca "$out/guests.crl.pem"

# --- rogue hierarchy: same subject DNs, unrelated keys ----------------------
mkroot rogue-root "$DN_BASE/CN=Example Test Root CA"
mkint rogue-staff-ca "$DN_BASE/OU=staff/CN=Example Staff CA" rogue-root 1001
genkey "$out/clients/rogue.key"
ossl req -new -config "$cnf" -key "$out/clients/rogue.key" \
     -subj "$DN_BASE/OU=staff/CN=staff-ok@example.test" -out "$out/.ca/rogue.csr"
CLIENT_SAN="email:staff-ok@example.test"
sign rogue-staff-ca "$out/rogue-staff-ca.crt" "$out/rogue-staff-ca.key" "$out/.ca/rogue.csr" "$out/clients/rogue.crt" v3_client "$START_OK" "$END_OK"
cat "$out/clients/rogue.crt" "$out/rogue-staff-ca.crt" > "$out/clients/rogue.chain.pem"

# --- bundles ----------------------------------------------------------------
cat "$out/root.crt" "$out/staff-ca.crt" "$out/guests-ca.crt" > "$out/ca-bundle.pem"
cat "$out/root.crl.pem" "$out/staff.crl.pem" "$out/guests.crl.pem" > "$out/crl-bundle.pem"
cat "$out/ca-bundle.pem" "$out/crl-bundle.pem" > "$out/ca-crl-bundle.pem"
cp "$out/root.crt" "$out/staff-ca.crt" "$out/guests-ca.crt" \
   "$out/root.crl.pem" "$out/staff.crl.pem" "$out/guests.crl.pem" "$out/capath/"
ossl rehash "$out/capath"

# sanity: verify expectations with openssl verify (CRL-checked)
v() { openssl verify -CAfile "$out/ca-bundle.pem" -CRLfile "$out/crl-bundle.pem" -crl_check "$@" >/dev/null 2>&1; }
v "$out/clients/staff-ok.crt"  || { echo "mkpki.sh: staff-ok does not verify" >&2; exit 1; }
v "$out/clients/guests-ok.crt" || { echo "mkpki.sh: guests-ok does not verify" >&2; exit 1; }
! v "$out/clients/staff-revoked.crt" || { echo "mkpki.sh: staff-revoked verifies" >&2; exit 1; }
! v "$out/clients/staff-expired.crt" || { echo "mkpki.sh: staff-expired verifies" >&2; exit 1; }
! v -untrusted "$out/rogue-staff-ca.crt" "$out/clients/rogue.crt" || { echo "mkpki.sh: rogue verifies" >&2; exit 1; }
openssl verify -CAfile "$out/root.crt" -untrusted "$out/server-chain.pem" "$out/server.crt" >/dev/null 2>&1 \
  || { echo "mkpki.sh: server cert does not verify" >&2; exit 1; }

printf 'KEYTYPE=%s\nSERVER_ISSUER=%s\n' "$keytype" "$server_issuer" > "$out/pki.env"
chmod 644 "$out"/*.crt "$out"/*.pem "$out"/clients/*.crt "$out"/clients/*.pem
# keys must be readable by a server that drops privileges (throw-away test keys)
chmod 644 "$out"/*.key "$out"/clients/*.key
exit 0
