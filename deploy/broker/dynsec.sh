#!/usr/bin/env bash
# Grants for the central broker's dynamic-security plugin, made from deploy/broker/acl.
#
#   dynsec.sh init JSON ADMIN_ID         write the plugin's first config (offline, before the
#                                        broker starts; chown it to mosquitto, which rewrites
#                                        it): ADMIN_ID may only administer the plugin
#   dynsec.sh [-o OPTS] device ID        give device ID its own role: the acl file's "pattern"
#                                        lines with %u replaced by ID (run again after editing acl)
#   dynsec.sh [-o OPTS] user ID          give ID the "topic" lines of the acl file's "user ID" block
#   dynsec.sh [-o OPTS] remove ID        delete ID's client and role (and drop its connection)
#   dynsec.sh render device|user ID      print the ACLs the two commands above would grant
#
# Why a role per identity: Mosquitto 2.0's acl_file never checks a SUBSCRIBE (it only filters
# delivery), while the dynamic-security plugin refuses one with the MQTT v5 reason 0x87. But
# its ACLs take no %u before Mosquitto 2.1, so the substitution happens here, once per device.
# IDs are certificate CNs from deploy/pki/pki.sh (use_identity_as_username): clients get no
# password, so they log in by certificate only. OPTS is a file of mosquitto_ctrl options,
# one per line, naming the broker and ADMIN_ID's certificate (--cafile, --cert, --key, -h,
# -p); without -o, mosquitto_ctrl reads ~/.config/mosquitto_ctrl. mosquitto_ctrl exits 0
# even when the plugin refuses a command, so its messages are read instead: any is an error.
# EDGE_BROKER_ACL overrides the acl file.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
ACL=${EDGE_BROKER_ACL:-$HERE/acl}
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage() { sed -n '2,12p' "$0" >&2; exit 2; }

OPTS=()
if [ "${1:-}" = "-o" ]; then
  [ $# -ge 2 ] || usage
  [ -r "$2" ] || die "cannot read mosquitto_ctrl options file $2"
  # Passed as arguments: mosquitto_ctrl 2.0 ignores its own -o (mosquitto issue #2471).
  while read -r opt val; do
    case $opt in '' | '#'*) continue ;; esac
    OPTS+=("$opt")
    if [ -n "$val" ]; then OPTS+=("$val"); fi
  done <"$2"
  shift 2
fi
[ $# -ge 2 ] || usage
CMD=$1
shift

check_id() {
  # Same rule as pki.sh: the id is a username and a topic level, never a wildcard.
  [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "id '$1' must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}"
}

acls() { # acls device|user ID: one "acltype topic" line per grant
  local kind=$1 id=$2 section=devices word access topic extra found=no
  [ -r "$ACL" ] || die "cannot read $ACL"
  while read -r word access topic extra; do
    case $word in
      '' | '#'*) continue ;;
      user) section="user $access"; [ "$access" != "$id" ] || found=yes; continue ;;
      pattern) [ "$kind" = device ] || continue; topic=${topic//%u/$id} ;;
      topic) if [ "$kind" != user ] || [ "$section" != "user $id" ]; then continue; fi ;;
      *) die "$ACL: unsupported line '$word $access $topic'" ;;
    esac
    if [ -z "$topic" ] || [ -n "$extra" ]; then
      die "$ACL: expected '$word read|write|readwrite TOPIC'"
    fi
    # A % left over (%c, or a typo) would be matched literally by the plugin: refuse it.
    [[ $topic != *%* ]] || die "$ACL: only %u is supported in '$topic'"
    case $access in
      read) printf 'subscribePattern %s\npublishClientReceive %s\n' "$topic" "$topic" ;;
      write) printf 'publishClientSend %s\n' "$topic" ;;
      readwrite) printf 'subscribePattern %s\npublishClientReceive %s\npublishClientSend %s\n' \
        "$topic" "$topic" "$topic" ;;
      *) die "$ACL: access must be read, write or readwrite, not '$access'" ;;
    esac
  done <"$ACL"
  [ "$kind" = device ] || [ $found = yes ] || die "$ACL has no 'user $id' block"
}

ctrl() { # mosquitto_ctrl dynsec ARGS; it exits 0 on refused commands, so read its stderr
  local err
  if ! err=$(mosquitto_ctrl "${OPTS[@]}" dynsec "$@" 2>&1 >/dev/null </dev/null) || [ -n "$err" ]; then
    printf '%s\n' "${err:-mosquitto_ctrl dynsec $1 failed}" >&2
    return 1
  fi
}

exists() { ctrl "$1" "$2" 2>/dev/null; } # exists getClient|getRole NAME

grant() { # grant device|user ID
  local kind=$1 id=$2 lines acltype topic
  lines=$(acls "$kind" "$id")
  [ -n "$lines" ] || die "$ACL grants $id nothing"
  # Rebuilt from scratch so a topic removed from the acl file is removed here too; the
  # identity holds no grant for the moment in between.
  if exists getRole "$id"; then ctrl deleteRole "$id"; fi
  ctrl createRole "$id"
  while read -r acltype topic; do
    ctrl addRoleACL "$id" "$acltype" "$topic" allow
  done <<<"$lines"
  # No password: the only way to be this client is to hold its certificate.
  if ! exists getClient "$id"; then ctrl createClient "$id"; fi
  ctrl addClientRole "$id" "$id"
  printf '%s: %s %s granted %s ACLs\n' "$PROG" "$kind" "$id" "$(wc -l <<<"$lines" | tr -d ' ')"
}

init() { # init JSON ADMIN_ID
  local json=$1 admin=$2 tmp
  check_id "$admin"
  [ ! -e "$json" ] || die "$json exists: the plugin keeps its state there"
  tmp=$(mktemp "$(dirname "$json")/.dynsec.XXXXXX")
  # Deny by default for every ACL type but unsubscribe; the admin may only use the plugin's
  # control topic (not read the fleet's traffic, unlike mosquitto_ctrl's own init).
  cat >"$tmp" <<EOF
{
  "defaultACLAccess": {"publishClientSend": false, "publishClientReceive": false,
                       "subscribe": false, "unsubscribe": true},
  "clients": [{"username": "$admin", "textname": "dynsec administrator (certificate)",
               "roles": [{"rolename": "dynsec-admin"}]}],
  "groups": [],
  "roles": [{"rolename": "dynsec-admin", "acls": [
    {"acltype": "publishClientSend", "topic": "\$CONTROL/dynamic-security/#", "allow": true},
    {"acltype": "publishClientReceive", "topic": "\$CONTROL/dynamic-security/#", "allow": true},
    {"acltype": "subscribePattern", "topic": "\$CONTROL/dynamic-security/#", "allow": true}]}]
}
EOF
  chmod 0600 "$tmp"
  mv -f "$tmp" "$json"
  printf '%s\n' "$json"
}

case "$CMD" in
  init)
    [ $# -eq 2 ] || usage
    init "$1" "$2"
    ;;
  device | user)
    [ $# -eq 1 ] || usage
    check_id "$1"
    grant "$CMD" "$1"
    ;;
  remove)
    [ $# -eq 1 ] || usage
    check_id "$1"
    if exists getClient "$1"; then ctrl deleteClient "$1"; fi
    if exists getRole "$1"; then ctrl deleteRole "$1"; fi
    printf '%s: removed %s\n' "$PROG" "$1"
    ;;
  render)
    if [ $# -ne 2 ] || { [ "$1" != device ] && [ "$1" != user ]; }; then usage; fi
    check_id "$2"
    acls "$1" "$2"
    ;;
  *)
    die "unknown command $CMD (init, device, user, remove, render)"
    ;;
esac
