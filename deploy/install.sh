#!/usr/bin/env bash
# Install the edge appliance firmware on Raspberry Pi OS Bookworm (arm64).
#
#   sudo deploy/install.sh                      # on the device, from a checkout
#   sudo deploy/install.sh --provision DIR      # ... and copy keys/certs/config from DIR
#   deploy/install.sh --root /mnt/rootfs        # lay the tree into an image or a test dir
#   deploy/install.sh --root DIR --wheels WHEELS # ... carrying the locked wheels (offline first boot)
#
# Supported: Raspberry Pi OS Bookworm (Debian 12, arm64, glibc 2.36): the locked
# aarch64 wheels need glibc >= 2.34 (ai-edge-litert), so Bullseye would install them
# and fail at import. python3-picamera2 comes from the Raspberry Pi archive
# (http://archive.raspberrypi.com/debian bookworm main), present on Raspberry Pi OS;
# on plain Debian add that archive first or install with --no-camera.
#
# Python packages: the hashed lock deploy/requirements-device.txt, installed with
# pip --require-hashes --only-binary=:all: --no-deps into a venv that sees apt's
# numpy 1.24 and OpenCV (--system-site-packages); the lock pins the same numpy, so
# pip keeps apt's. An image laid with --root has no pip run: edge-firstboot.service
# finishes it on the device's first boot (pip bootstrapped offline with ensurepip,
# the wheels from --wheels if carried, else PyPI), before edge.service starts.
#
# Idempotent: run it again after an update; existing config and keys are kept,
# their modes and owners re-asserted. With --root DIR (or DESTDIR=DIR) nothing on
# the running host is touched: no apt, no pip, no systemctl/udevadm on the host;
# the service user is added to DIR/etc/passwd by systemd-sysusers --root, and the
# steps that need the device itself are printed as "skipped (--root): ...".
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)

ROOT=${DESTDIR:-}
SRC=$(cd "$HERE/.." && pwd)
PROVISION=""
BROKER_ALLOW=""
DO_APT=1
DO_PIP=1
DO_CORAL=1
DO_ENABLE=1
CORAL_KEY=""
PYTHON=${PYTHON:-python3}
WHEELS=""
FIRST_BOOT=0
DO_CAMERA=1
MIN_GLIBC=2.34  # the aarch64 ai-edge-litert wheel's newest glibc symbol

APT_PACKAGES=(
  python3 python3-venv python3-pip
  python3-systemd python3-numpy python3-opencv python3-nacl
  mosquitto-clients ca-certificates
)
PICAMERA_PACKAGE=python3-picamera2  # Raspberry Pi archive only (see the header)
RPI_ARCHIVE="http://archive.raspberrypi.com/debian bookworm main"
CORAL_LIST_LINE="deb [signed-by=/usr/share/keyrings/coral-edgetpu-archive-keyring.gpg] https://packages.cloud.google.com/apt coral-edgetpu-stable main"
CORAL_KEY_URL="https://packages.cloud.google.com/apt/doc/apt-key.gpg"

usage() {
  cat <<EOF
usage: $PROG [--root DIR] [--source DIR] [--provision DIR] [--no-packages]
             [--no-coral] [--coral-key FILE] [--no-enable] [--python PYTHON]
             [--broker-allow ADDRS]

  --root DIR       install into DIR instead of / (also: DESTDIR=DIR); host untouched
  --source DIR     firmware checkout or unpacked package (default: $SRC)
  --provision DIR  copy DIR/keys/* to /etc/edge/keys (0600, user edge) and
                   DIR/{edge.toml,trust.json,order.json} to /etc/edge (0640);
                   symlinks in DIR are refused (root would copy what they point at)
  --broker-allow ADDRS
                   comma-separated IP addresses or prefixes edge.service may reach
                   besides loopback (the broker, and DNS servers if the broker is
                   named by host name); default: the [broker] host of
                   /etc/edge/edge.toml when it is an IP address, else its addresses
                   and /etc/resolv.conf's name servers resolved now (not with --root)
  --no-packages    skip apt-get and pip (packages already installed)
  --no-apt         skip apt-get only (the .deb's postinst: apt resolved Depends)
  --no-coral       skip Coral's apt repository and libedgetpu1-std (CPU only)
  --coral-key FILE Coral apt signing key checked out of band (else fetched over HTTPS)
  --no-enable      install the unit but do not enable it
  --no-camera      do not install $PICAMERA_PACKAGE (no Raspberry Pi archive, no camera)
  --wheels DIR     with --root: carry the locked wheels from DIR (checked against the
                   lock's hashes) so that first boot installs them offline
  --first-boot     on the device: finish an image laid with --root (edge-firstboot.service)
EOF
}

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --source) SRC=${2:?--source needs a directory}; shift 2 ;;
    --provision) PROVISION=${2:?--provision needs a directory}; shift 2 ;;
    --broker-allow) BROKER_ALLOW=${2:?--broker-allow needs addresses}; shift 2 ;;
    --no-packages) DO_APT=0; DO_PIP=0; shift ;;
    --no-apt) DO_APT=0; shift ;;
    --no-coral) DO_CORAL=0; shift ;;
    --coral-key) CORAL_KEY=${2:?--coral-key needs a file}; shift 2 ;;
    --no-enable) DO_ENABLE=0; shift ;;
    --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
    --no-camera) DO_CAMERA=0; shift ;;
    --wheels) WHEELS=${2:?--wheels needs a directory}; shift 2 ;;
    --first-boot) FIRST_BOOT=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$PROG: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

say() { printf '%s: %s\n' "$PROG" "$*"; }
skip() { printf '%s: skipped (--root): %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != "/" ] || ROOT=""
fi
ROOTED=0
[ -z "$ROOT" ] || ROOTED=1
if [ "$(id -u)" -ne 0 ]; then
  die "run as root (file owners and modes are part of the install), e.g. sudo $0 $*"
fi
[ -z "$WHEELS" ] || [ "$ROOTED" -eq 1 ] || die "--wheels is for --root images"

# systemctl and udevadm talk to a running systemd and udev, which a chroot (image build,
# make pi-check) or a container does not have: there the unit is enabled offline and
# udev reads the rules at boot.
systemd_running() {
  [ -d /run/systemd/system ] || return 1
  ! systemd-detect-virt --chroot >/dev/null 2>&1
}

# The distribution this runs on (not for --root: that is the image's, checked at first boot).
check_platform() {
  local id="" version="" glibc
  if [ -r /etc/os-release ]; then
    id=$(sed -n 's/^ID="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)
    version=$(sed -n 's/^VERSION_CODENAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)
  fi
  if [ "$version" != bookworm ]; then
    die "this is ${id:-an unknown system} ${version:-?}; the firmware's locked stack is for Raspberry Pi OS Bookworm (Debian 12)"
  fi
  if [ "$id" = raspbian ] || [ -e /etc/rpi-issue ]; then
    say "Raspberry Pi OS Bookworm ($(uname -m))"
  else
    say "Debian $version ($(uname -m)), not Raspberry Pi OS: $PICAMERA_PACKAGE comes from the Raspberry Pi archive ($RPI_ARCHIVE); add it or use --no-camera"
  fi
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
  if [ -n "$glibc" ] && [ "$(printf '%s\n%s\n' "$MIN_GLIBC" "$glibc" | sort -V | head -n1)" != "$MIN_GLIBC" ]; then
    die "glibc $glibc is older than $MIN_GLIBC, which the locked ai-edge-litert wheel needs: use Bookworm"
  fi
}

OPT=/opt/edge
VENV=$OPT/venv
MODELS=/usr/share/edge/models  # edge.perception.manifest.SYSTEM_MODELS_DIR
# Run from the unpacked .deb (--source /opt/edge): files are dpkg's, only set up the rest.
PACKAGED=0
if [ "$(cd "$SRC" && pwd)" = "$OPT" ] && [ "$ROOTED" -eq 0 ]; then
  PACKAGED=1
  [ -d "$SRC/app/edge" ] || die "no firmware package at $SRC/app/edge"
else
  [ -d "$SRC/edge" ] || die "no firmware package at $SRC/edge (use --source)"
fi

# --- 1. distribution packages --------------------------------------------------
install_packages() {
  local pkgs=("${APT_PACKAGES[@]}")
  if [ "$DO_CAMERA" -eq 1 ]; then
    pkgs+=("$PICAMERA_PACKAGE")
  fi
  if [ "$DO_CORAL" -eq 1 ]; then
    pkgs+=(libedgetpu1-std)
  fi
  if [ "$ROOTED" -eq 1 ]; then
    skip "Coral apt source /etc/apt/sources.list.d/coral-edgetpu.list and its key"
    skip "apt-get install ${pkgs[*]}"
    return
  fi
  if [ "$DO_APT" -eq 0 ]; then
    say "apt-get skipped (--no-packages/--no-apt)"
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
  if [ "$DO_CAMERA" -eq 1 ] && ! apt-get install -y -qq --no-install-recommends "$PICAMERA_PACKAGE"; then
    die "$PICAMERA_PACKAGE did not install: it comes from the Raspberry Pi archive ($RPI_ARCHIVE), which Raspberry Pi OS has in /etc/apt/sources.list.d/raspi.list; add it, or pass --no-camera"
  fi
  [ "$DO_CORAL" -eq 1 ] || return 0
  # Not fatal from here on: without the Coral runtime the firmware runs the cpu_preferred (float32)
  # models on the CPU and says so; `edge selftest` fails the accelerator check with the fix.
  if ! add_coral_repo || ! apt-get update -qq \
      || ! apt-get install -y -qq --no-install-recommends libedgetpu1-std; then
    say "WARNING: libedgetpu1-std did not install from Coral's repository; the device will run on the CPU"
  fi
}

add_coral_repo() {
  # Called in a condition (errexit is off here): every step checks its own status.
  local keyring=/usr/share/keyrings/coral-edgetpu-archive-keyring.gpg
  local list=/etc/apt/sources.list.d/coral-edgetpu.list
  if [ ! -s "$keyring" ]; then
    if [ -n "$CORAL_KEY" ]; then
      gpg --dearmor <"$CORAL_KEY" >"$keyring.tmp" || return 1
    else
      # Trust on first use over HTTPS; pass --coral-key to use a key checked elsewhere.
      apt-get install -y -qq --no-install-recommends curl gnupg || return 1
      curl -fsSL "$CORAL_KEY_URL" | gpg --dearmor >"$keyring.tmp" || { rm -f "$keyring.tmp"; return 1; }
    fi
    [ -s "$keyring.tmp" ] || { rm -f "$keyring.tmp"; return 1; }
    chmod 0644 "$keyring.tmp" && mv -f "$keyring.tmp" "$keyring" || return 1
  fi
  printf '%s\n' "$CORAL_LIST_LINE" >"$list.tmp" || return 1
  chmod 0644 "$list.tmp" && mv -f "$list.tmp" "$list"
}

# --- 2. service user (systemd-sysusers works on a --root tree as well) -------------
create_user() {
  if [ "$PACKAGED" -eq 0 ]; then
    install -D -m 0644 -o 0 -g 0 "$SRC/deploy/systemd/edge.sysusers" "$ROOT/usr/lib/sysusers.d/edge.conf"
  fi
  mkdir -p "$ROOT/etc"
  if [ "$ROOTED" -eq 1 ]; then
    systemd-sysusers --root="$ROOT" "$ROOT/usr/lib/sysusers.d/edge.conf" >/dev/null
  else
    systemd-sysusers /usr/lib/sysusers.d/edge.conf >/dev/null
  fi
  EDGE_UID=$(awk -F: '$1 == "edge" { print $3 }' "$ROOT/etc/passwd")
  EDGE_GID=$(awk -F: '$1 == "edge" { print $4 }' "$ROOT/etc/passwd")
  if [ -z "$EDGE_UID" ] || [ -z "$EDGE_GID" ]; then
    die "user edge missing from $ROOT/etc/passwd"
  fi
  say "service user edge: uid $EDGE_UID gid $EDGE_GID (groups video, plugdev)"
}

# --- 3. firmware, models, venv ------------------------------------------------------
copy_tree() { # copy_tree SRC_PARENT NAME DEST_DIR: replace DEST_DIR/NAME atomically-ish
  local parent=$1 name=$2 dest=$3
  mkdir -p "$dest"
  rm -rf "$dest/.$name.new"
  mkdir -p "$dest/.$name.new"
  tar -C "$parent" --exclude=__pycache__ --exclude='*.pyc' --owner=0 --group=0 \
      --mode='u+rwX,go+rX,go-w' -cf - "$name" | tar -C "$dest/.$name.new" --no-same-owner -xf -
  rm -rf "$dest/$name.old"
  if [ -e "$dest/$name" ]; then mv "$dest/$name" "$dest/$name.old"; fi
  mv "$dest/.$name.new/$name" "$dest/$name"
  rm -rf "$dest/.$name.new" "$dest/$name.old"
}

install_firmware() {
  if [ "$PACKAGED" -eq 0 ]; then
    install -d -m 0755 -o 0 -g 0 "$ROOT$OPT" "$ROOT$OPT/app" "$ROOT$OPT/deploy" "$ROOT$MODELS"
    copy_tree "$SRC" edge "$ROOT$OPT/app"
    install -m 0644 -o 0 -g 0 "$SRC/README.md" "$ROOT$OPT/README.md"
    install -m 0755 -o 0 -g 0 "$SRC/deploy/install.sh" "$ROOT$OPT/deploy/install.sh"
    install -m 0644 -o 0 -g 0 "$SRC/deploy/requirements-device.txt" "$ROOT$OPT/deploy/requirements-device.txt"
    copy_tree "$SRC/deploy" systemd "$ROOT$OPT/deploy"
    copy_tree "$SRC/deploy" udev "$ROOT$OPT/deploy"
    copy_tree "$SRC/deploy" config "$ROOT$OPT/deploy"
    local f found=0
    rm -f "$ROOT$MODELS"/*.tflite "$ROOT$MODELS"/*.npz  # a model dropped from the manifest must not linger
    for f in "$SRC"/models/manifest.json "$SRC"/models/*.tflite "$SRC"/models/*.npz "$SRC"/models/*.md; do
      [ -f "$f" ] || continue
      install -m 0644 -o 0 -g 0 "$f" "$ROOT$MODELS/$(basename "$f")"
      found=1
    done
    [ "$found" -eq 1 ] || say "WARNING: no models in $SRC/models (run make models); selftest will fail"
  fi
  if [ ! -f "$ROOT$VENV/pyvenv.cfg" ]; then
    if [ "$ROOTED" -eq 1 ]; then
      "$PYTHON" -m venv --system-site-packages --without-pip "$ROOT$VENV"
      # venv writes its own path into these; on the target it lives at $VENV.
      sed -i "s|$ROOT$VENV|$VENV|g" "$ROOT$VENV/pyvenv.cfg" "$ROOT$VENV"/bin/activate*
    else
      "$PYTHON" -m venv --system-site-packages "$ROOT$VENV"
    fi
  fi
  local purelib
  purelib=$("$ROOT$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  # The venv python reports its own prefix; map it back into the tree.
  purelib=$ROOT$VENV/${purelib#*"$VENV"/}
  mkdir -p "$purelib"
  printf '%s\n' "$OPT/app" >"$purelib/edge-app.pth"
  # pip's console-script shim, written by hand so the firmware needs no build step.
  cat >"$ROOT$VENV/bin/edge.tmp" <<EOF
#!$VENV/bin/python
import sys

from edge.cli import main

sys.exit(main())
EOF
  chmod 0755 "$ROOT$VENV/bin/edge.tmp"
  mv -f "$ROOT$VENV/bin/edge.tmp" "$ROOT$VENV/bin/edge"
  chown -R 0:0 "$ROOT$VENV"
  if [ "$ROOTED" -eq 1 ]; then
    carry_wheels
    if [ "$DO_PIP" -eq 1 ]; then
      : >"$ROOT$OPT/.first-boot"
      skip "pip install of $OPT/deploy/requirements-device.txt: edge-firstboot.service does it on first boot"
    fi
  elif [ "$DO_PIP" -eq 1 ]; then
    pip_install_locked
  fi
}

lock_hashes() { sed -n 's/.*--hash=sha256:\([0-9a-f]\{64\}\).*/\1/p' "$1"; }

# --root --wheels DIR: copy the wheels the lock names (by hash) into the image.
carry_wheels() {
  [ -n "$WHEELS" ] || return 0
  local lock=$SRC/deploy/requirements-device.txt w sum n=0
  install -d -m 0755 -o 0 -g 0 "$ROOT$OPT/wheels"
  rm -f "$ROOT$OPT/wheels"/*.whl
  for w in "$WHEELS"/*.whl; do
    [ -f "$w" ] || continue
    sum=$(sha256sum "$w" | cut -d' ' -f1)
    if lock_hashes "$lock" | grep -qx "$sum"; then
      install -m 0644 -o 0 -g 0 "$w" "$ROOT$OPT/wheels/$(basename "$w")"
      n=$((n + 1))
    fi
  done
  [ "$n" -gt 0 ] || die "no wheel in $WHEELS has a hash from $lock"
  say "carried $n locked wheels to $OPT/wheels for an offline first boot"
}

# The device venv gets exactly the lock: no resolver, no second numpy. apt's numpy must be
# the lock's (the venv sees it through --system-site-packages), else pip would add one.
pip_install_locked() {
  local lock=$OPT/deploy/requirements-device.txt want have
  [ "$PACKAGED" -eq 1 ] || lock=$SRC/deploy/requirements-device.txt
  want=$(sed -n 's/^numpy==\([^ ]*\).*/\1/p' "$lock")
  have=$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    die "the system numpy is '${have:-missing}', the lock wants $want (Bookworm's python3-numpy): apt install python3-numpy from Bookworm"
  fi
  if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    "$VENV/bin/python" -m ensurepip --default-pip >/dev/null  # offline: python3-venv's wheels
  fi
  local src=()
  if [ -d "$OPT/wheels" ] && compgen -G "$OPT/wheels/*.whl" >/dev/null; then
    src=(--no-index --find-links "$OPT/wheels")
  fi
  "$VENV/bin/python" -m pip install --quiet --require-hashes --only-binary=:all: --no-deps \
    "${src[@]}" -r "$lock"
  have=$("$VENV/bin/python" -c 'import numpy; print(numpy.__version__)')
  [ "$have" = "$want" ] || die "numpy $have in $VENV after pip, the lock says $want"
  say "locked packages installed into $VENV (numpy $have from the system)"
}

# --- 4. /etc/edge and /var/lib/edge ------------------------------------------------
install_config() {
  install -d -m 0750 -o 0 -g "$EDGE_GID" "$ROOT/etc/edge"
  install -d -m 0700 -o "$EDGE_UID" -g "$EDGE_GID" "$ROOT/etc/edge/keys"
  install -d -m 0750 -o "$EDGE_UID" -g "$EDGE_GID" "$ROOT/var/lib/edge"
  if [ "$PACKAGED" -eq 0 ]; then  # the .deb ships it as a conffile
    install -m 0640 -o 0 -g "$EDGE_GID" "$SRC/deploy/config/edge.toml.example" "$ROOT/etc/edge/edge.toml.example"
  fi
  if [ -n "$PROVISION" ]; then
    [ -d "$PROVISION" ] || die "--provision $PROVISION is not a directory"
    # Run as root, install(1) would copy whatever a symlink points at (another user's
    # key, /etc/shadow) into /etc/edge: refuse the folder before copying anything.
    local links
    links=$(find "$PROVISION/" -maxdepth 2 -type l -print | paste -sd' ' -)
    [ -z "$links" ] || die "--provision: refusing symlinks (copy the files themselves): $links"
    local f
    for f in edge.toml trust.json order.json; do
      if [ -f "$PROVISION/$f" ]; then
        install -m 0640 -o 0 -g "$EDGE_GID" "$PROVISION/$f" "$ROOT/etc/edge/$f"
      fi
    done
    if [ -d "$PROVISION/keys" ]; then
      for f in "$PROVISION"/keys/*; do
        [ -f "$f" ] || continue
        install -m 0600 -o "$EDGE_UID" -g "$EDGE_GID" "$f" "$ROOT/etc/edge/keys/$(basename "$f")"
      done
    fi
  fi
  if [ ! -e "$ROOT/etc/edge/edge.toml" ]; then
    install -m 0640 -o 0 -g "$EDGE_GID" "$SRC/deploy/config/edge.toml.example" "$ROOT/etc/edge/edge.toml"
    say "wrote /etc/edge/edge.toml from the example: set [device] and [broker] before starting"
  fi
  # Re-assert modes on every run: a key copied in by hand must not stay world-readable.
  find "$ROOT/etc/edge/keys" -mindepth 1 -maxdepth 1 -type f \
    -exec chown "$EDGE_UID:$EDGE_GID" {} + -exec chmod 0600 {} +
  find "$ROOT/etc/edge" -mindepth 1 -maxdepth 1 -type f -exec chown "0:$EDGE_GID" {} + \
    -exec chmod 0640 {} +
}

# --- 5. udev rules and the unit ------------------------------------------------------
# edge.service has IPAddressDeny=any and allows loopback only; the broker's addresses come
# from a drop-in written here, so a stolen or subverted service can reach nothing else.
DROPIN=/etc/systemd/system/edge.service.d/50-broker-address.conf

broker_addresses() { # prints the allow-list, or nothing when it cannot be known
  if [ -n "$BROKER_ALLOW" ]; then
    printf '%s\n' "$BROKER_ALLOW"
    return
  fi
  local conf=$ROOT/etc/edge/edge.toml host
  [ -f "$conf" ] || return 0
  host=$("$PYTHON" -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb")).get("broker", {}).get("host", ""))' "$conf") \
    || die "cannot read [broker] host from $conf"
  [ -n "$host" ] || return 0
  if "$PYTHON" -c 'import ipaddress, sys; ipaddress.ip_address(sys.argv[1])' "$host" 2>/dev/null; then
    printf '%s\n' "$host"
  elif [ "$ROOTED" -eq 0 ]; then
    # A host name: its addresses now, and the name servers that resolve it.
    local addrs dns
    addrs=$(getent ahosts "$host" | awk '{print $1}' | sort -u | paste -sd, -) || true
    [ -n "$addrs" ] || { say "warning: broker host $host does not resolve; no address allowed" >&2; return 0; }
    dns=$(awk '$1 == "nameserver" {print $2}' /etc/resolv.conf 2>/dev/null | paste -sd, -)
    printf '%s\n' "$addrs${dns:+,$dns}"
  fi
}

install_broker_allow() {
  local list
  list=$(broker_addresses)
  if [ -z "$list" ]; then
    if [ ! -e "$ROOT$DROPIN" ]; then
      say "edge.service may reach loopback only: give --broker-allow ADDRS (the broker, and"
      say "  DNS servers if it is named by host name), or set [broker] host to its IP address"
    fi
    return 0
  fi
  local checked
  checked=$("$PYTHON" -c 'import ipaddress, sys
print(" ".join(str(ipaddress.ip_network(a.strip(), strict=False)) for a in sys.argv[1].split(",") if a.strip()))' \
    "$list") || die "--broker-allow: not IP addresses or prefixes: $list"
  install -d -m 0755 -o 0 -g 0 "$(dirname "$ROOT$DROPIN")"
  printf '# Written by install.sh: the addresses edge.service may reach besides loopback.\n[Service]\nIPAddressAllow=%s\n' \
    "$checked" >"$ROOT$DROPIN.tmp"
  chmod 0644 "$ROOT$DROPIN.tmp"
  mv -f "$ROOT$DROPIN.tmp" "$ROOT$DROPIN"
  say "edge.service may reach: loopback $checked ($DROPIN)"
}

install_system() {
  install_broker_allow
  if [ "$PACKAGED" -eq 0 ]; then
    install -D -m 0644 -o 0 -g 0 "$SRC/deploy/udev/99-edge-coral.rules" "$ROOT/etc/udev/rules.d/99-edge-coral.rules"
    install -D -m 0644 -o 0 -g 0 "$SRC/deploy/systemd/edge.service" "$ROOT/lib/systemd/system/edge.service"
    install -D -m 0644 -o 0 -g 0 "$SRC/deploy/systemd/edge-firstboot.service" "$ROOT/lib/systemd/system/edge-firstboot.service"
  fi
  if [ "$ROOTED" -eq 1 ]; then
    skip "udevadm control --reload; udevadm trigger"
    if [ "$DO_ENABLE" -eq 1 ]; then
      systemctl --root="$ROOT" enable edge.service 2>/dev/null
    fi
    if [ -e "$ROOT$OPT/.first-boot" ]; then
      systemctl --root="$ROOT" enable edge-firstboot.service 2>/dev/null
    fi
    return
  fi
  if ! systemd_running; then
    say "no running systemd (chroot or container): the rules and the unit take effect at boot"
    if [ "$DO_ENABLE" -eq 1 ]; then
      systemctl --root=/ enable edge.service 2>/dev/null
    fi
    return
  fi
  udevadm control --reload || true
  udevadm trigger --subsystem-match=usb --subsystem-match=apex || true
  systemctl daemon-reload
  if [ "$DO_ENABLE" -eq 1 ]; then
    systemctl enable edge.service
  fi
}

if [ "$FIRST_BOOT" -eq 1 ]; then
  # edge-firstboot.service: the image was laid with --root; pip runs here, once.
  [ "$ROOTED" -eq 0 ] || die "--first-boot runs on the device, not with --root"
  check_platform
  [ -d "$OPT/app/edge" ] || die "no firmware at $OPT/app: lay the image with install.sh --root first"
  # The venv --root made points at the build host's python if that differed: remake it.
  "$VENV/bin/python" -c 'import sys' 2>/dev/null || rm -rf "$VENV"
  SRC=$OPT PACKAGED=1
  install_firmware
  rm -f "$OPT/.first-boot"
  say "first boot: done"
  exit 0
fi

[ "$ROOTED" -eq 1 ] || check_platform
install_packages
create_user
install_firmware
install_config
install_system
say "done. Next: provision keys (--provision DIR), edit /etc/edge/edge.toml, then"
say "  sudo -u edge $VENV/bin/edge selftest --config /etc/edge/edge.toml && sudo systemctl start edge"
