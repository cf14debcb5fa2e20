#!/usr/bin/env bash
# The fleet's dedicated device CA for the central MQTT broker (openssl only).
#
#   pki.sh DIR init [CA_NAME]          create the CA (EC P-256) and an empty CRL
#   pki.sh DIR server HOST [SAN...]    broker certificate (serverAuth); SAN like DNS:x or IP:1.2.3.4
#   pki.sh DIR device ID               device identity: CN=ID (clientAuth); the broker's
#                                      use_identity_as_username makes ID the ACL's %u
#   pki.sh DIR consumer ID             operators' consumer identity, e.g. operator-consumer
#   pki.sh DIR revoke ID               revoke the current certificate of ID, regenerate the CRL
#   pki.sh DIR crl                     regenerate the CRL (it expires: run from a timer)
#
# Output for ID: DIR/issued/ID.key (0600), DIR/issued/ID.crt, plus DIR/ca.crt and
# DIR/crl.pem. Copy ID.key, ID.crt and ca.crt to the device (install.sh --provision)
# and ca.crt, crl.pem and the server pair to the broker. DIR/private holds the CA
# key: keep DIR offline.
set -euo pipefail
umask 077

PROG=$(basename "$0")
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
[ $# -ge 2 ] || { sed -n '2,16p' "$0" >&2; exit 2; }

DIR=$1
CMD=$2
shift 2
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
DAYS=${EDGE_PKI_DAYS:-825}
CRL_DAYS=${EDGE_PKI_CRL_DAYS:-30}

conf() {
  cat <<EOF
[ ca ]
default_ca = edge_ca

[ edge_ca ]
dir = $DIR
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
certificate = \$dir/ca.crt
private_key = \$dir/private/ca.key
serial = \$dir/serial
crlnumber = \$dir/crlnumber
default_md = sha256
default_days = $DAYS
default_crl_days = $CRL_DAYS
policy = policy_cn
unique_subject = no
copy_extensions = none
crl_extensions = crl_ext

[ policy_cn ]
commonName = supplied
organizationName = optional

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ ca_ext ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = \$ENV::EDGE_SAN

[ crl_ext ]
authorityKeyIdentifier = keyid
EOF
}

need_ca() {
  if [ ! -f "$DIR/ca.crt" ] || [ ! -f "$DIR/private/ca.key" ]; then
    die "no CA in $DIR: run '$PROG $DIR init'"
  fi
}

check_id() {
  # The id becomes an MQTT username and a topic level: no wildcards, no separators.
  [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "id '$1' must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}"
}

gen_crl() {
  openssl ca -config "$DIR/openssl.cnf" -gencrl -out "$DIR/crl.pem.tmp" 2>/dev/null
  chmod 0644 "$DIR/crl.pem.tmp"
  mv -f "$DIR/crl.pem.tmp" "$DIR/crl.pem"
}

issue() { # issue ID EXTENSION
  local id=$1 ext=$2
  check_id "$id"
  need_ca
  [ ! -f "$DIR/issued/$id.crt" ] || die "$id already has a certificate; revoke it first"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$DIR/issued/$id.key"
  openssl req -new -key "$DIR/issued/$id.key" -subj "/CN=$id" -out "$DIR/issued/$id.csr"
  EDGE_SAN=${EDGE_SAN:-DNS:$id} openssl ca -config "$DIR/openssl.cnf" -batch -notext \
    -extensions "$ext" -in "$DIR/issued/$id.csr" -out "$DIR/issued/$id.crt" 2>/dev/null
  rm -f "$DIR/issued/$id.csr"
  chmod 0600 "$DIR/issued/$id.key"
  chmod 0644 "$DIR/issued/$id.crt"
  printf '%s\n' "$DIR/issued/$id.crt"
}

case "$CMD" in
  init)
    name=${1:-Edge device CA}
    [ ! -f "$DIR/ca.crt" ] || die "$DIR already holds a CA"
    mkdir -p "$DIR/private" "$DIR/newcerts" "$DIR/issued"
    chmod 0700 "$DIR/private"
    : >"$DIR/index.txt"
    printf '1000\n' >"$DIR/serial"
    printf '1000\n' >"$DIR/crlnumber"
    conf >"$DIR/openssl.cnf"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$DIR/private/ca.key"
    EDGE_SAN=DNS:unused openssl req -config "$DIR/openssl.cnf" -new -x509 -days 3650 \
      -key "$DIR/private/ca.key" -subj "/CN=$name" -extensions ca_ext -out "$DIR/ca.crt"
    chmod 0644 "$DIR/ca.crt"
    EDGE_SAN=DNS:unused gen_crl
    printf '%s\n' "$DIR/ca.crt"
    ;;
  server)
    [ $# -ge 1 ] || die "usage: $PROG DIR server HOST [SAN...]"
    host=$1
    shift
    san="DNS:$host"
    for s in "$@"; do san="$san,$s"; done
    EDGE_SAN=$san issue "$host" server_ext
    ;;
  device|consumer)
    [ $# -eq 1 ] || die "usage: $PROG DIR $CMD ID"
    EDGE_SAN=DNS:unused issue "$1" client_ext
    ;;
  revoke)
    [ $# -eq 1 ] || die "usage: $PROG DIR revoke ID"
    check_id "$1"
    need_ca
    [ -f "$DIR/issued/$1.crt" ] || die "no certificate for $1"
    EDGE_SAN=DNS:unused openssl ca -config "$DIR/openssl.cnf" -revoke "$DIR/issued/$1.crt" 2>/dev/null
    serial=$(openssl x509 -in "$DIR/issued/$1.crt" -noout -serial | cut -d= -f2)
    # Kept, renamed, so the id can be issued again and the old pair shown to be refused.
    mv -f "$DIR/issued/$1.crt" "$DIR/issued/$1.$serial.revoked.crt"
    mv -f "$DIR/issued/$1.key" "$DIR/issued/$1.$serial.revoked.key"
    EDGE_SAN=DNS:unused gen_crl
    printf 'revoked %s (serial %s); distribute %s to the broker and reload it\n' "$1" "$serial" "$DIR/crl.pem"
    ;;
  crl)
    need_ca
    EDGE_SAN=DNS:unused gen_crl
    printf '%s\n' "$DIR/crl.pem"
    ;;
  *)
    die "unknown command $CMD (init, server, device, consumer, revoke, crl)"
    ;;
esac
