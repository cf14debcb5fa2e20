#!/usr/bin/env bash
# Build the firmware's Debian package with dpkg-deb:  deploy/deb/build-deb.sh [OUT_DIR]
#
# Contents: the Python package under /opt/edge/app, the models under
# /usr/share/edge/models, the unit in /lib/systemd/system, the Coral udev rules
# in /lib/udev/rules.d, the sysusers file, and the config example in /etc/edge.
# The postinst runs /opt/edge/deploy/install.sh (user, venv, /etc/edge and
# /var/lib/edge modes, enable), so the package and the installer cannot drift.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
OUT=${1:-$SRC/dist}
PKG=edge-firmware
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$SRC/pyproject.toml" | head -n1)
[ -n "$VERSION" ] || { echo "build-deb: no version in pyproject.toml" >&2; exit 1; }
[ -f "$SRC/models/manifest.json" ] || { echo "build-deb: models/manifest.json missing: run make models" >&2; exit 1; }

STAGE=$(mktemp -d)
chmod 0755 "$STAGE"
trap 'rm -rf "$STAGE"' EXIT
umask 022

d() { install -d -m 0755 "$STAGE/$1"; }
f() { install -D -m "$1" "$2" "$STAGE/$3"; }

d opt/edge/app
tar -C "$SRC" --exclude=__pycache__ --exclude='*.pyc' -cf - edge | tar -C "$STAGE/opt/edge/app" -xf -
find "$STAGE/opt/edge/app" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
f 0644 "$SRC/README.md" opt/edge/README.md
f 0755 "$SRC/deploy/install.sh" opt/edge/deploy/install.sh
f 0644 "$SRC/deploy/requirements-device.txt" opt/edge/deploy/requirements-device.txt
f 0644 "$SRC/deploy/systemd/edge.service" opt/edge/deploy/systemd/edge.service
f 0644 "$SRC/deploy/systemd/edge.sysusers" opt/edge/deploy/systemd/edge.sysusers
f 0644 "$SRC/deploy/udev/99-edge-coral.rules" opt/edge/deploy/udev/99-edge-coral.rules
f 0644 "$SRC/deploy/config/edge.toml.example" opt/edge/deploy/config/edge.toml.example
d usr/share/edge/models
for m in "$SRC"/models/manifest.json "$SRC"/models/*.tflite "$SRC"/models/*.npz "$SRC"/models/*.md; do
  [ -f "$m" ] && f 0644 "$m" "usr/share/edge/models/$(basename "$m")"
done
f 0644 "$SRC/deploy/systemd/edge.service" lib/systemd/system/edge.service
f 0644 "$SRC/deploy/udev/99-edge-coral.rules" lib/udev/rules.d/99-edge-coral.rules
f 0644 "$SRC/deploy/systemd/edge.sysusers" usr/lib/sysusers.d/edge.conf
f 0644 "$SRC/deploy/config/edge.toml.example" etc/edge/edge.toml.example

d DEBIAN
SIZE=$(du -sk "$STAGE" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: all
Maintainer: Edge appliance maintainers <edge@localhost>
Section: misc
Priority: optional
Installed-Size: $SIZE
Depends: python3 (>= 3.11), python3-venv, python3-pip, python3-numpy, python3-opencv, python3-nacl, python3-systemd, systemd (>= 252), ca-certificates
Recommends: python3-picamera2, libedgetpu1-std, mosquitto-clients
Description: Edge watchlist appliance firmware (camera, Coral, MQTT)
 Face detection and watchlist matching on a Raspberry Pi with a Coral Edge TPU,
 publishing match events to a central MQTT broker over TLS. Runs as the
 hardened systemd service edge.service; commission with "edge selftest".
 The postinst creates the service user and the venv in /opt/edge/venv; pip
 installs the hashed lock /opt/edge/deploy/requirements-device.txt (paho-mqtt,
 ai-edge-litert) with --require-hashes, keeping apt's numpy.
EOF
printf '/etc/edge/edge.toml.example\n' >"$STAGE/DEBIAN/conffiles"

cat >"$STAGE/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  /opt/edge/deploy/install.sh --source /opt/edge --no-apt
  if [ -d /run/systemd/system ] && systemctl -q is-active edge.service; then
    systemctl restart edge.service || true
  fi
fi
exit 0
EOF
cat >"$STAGE/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now edge.service || true
fi
exit 0
EOF
cat >"$STAGE/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
# The venv and the shim are made by postinst, so dpkg does not know them.
if [ "$1" = remove ] || [ "$1" = purge ]; then
  rm -rf /opt/edge/venv
fi
# Keys, config and state (outbox, audit log) are evidence: kept unless purged.
if [ "$1" = purge ]; then
  rm -rf /var/lib/edge /etc/edge
fi
exit 0
EOF
chmod 0755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/prerm" "$STAGE/DEBIAN/postrm"

mkdir -p "$OUT"
DEB="$OUT/${PKG}_${VERSION}_all.deb"
dpkg-deb --root-owner-group -Zgzip -z6 --build "$STAGE" "$DEB" >/dev/null
printf '%s\n' "$DEB"
