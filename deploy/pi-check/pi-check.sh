#!/usr/bin/env bash
# `make pi-check`: install the firmware into an arm64 Debian 12 (Bookworm) root under
# qemu-user, exactly as deploy/install.sh does on a Raspberry Pi, and run it there.
#
#   deploy/pi-check/pi-check.sh [--pi 4|5] [--keep]      (root; x86-64 build host)
#
# 1. base root (cached in $EDGE_PI_CHECK_CACHE, default /var/cache/edge-pi-check):
#    debootstrap arm64 bookworm + the apt packages install.sh asks for. Built once;
#    a second run starts from a copy of it, so only steps 2-4 run again.
#    python3-picamera2 lives only in the Raspberry Pi archive, which is unreachable
#    here: a STAND-IN package of that name (deploy/pi-check/standin_picamera2) is
#    served from a local apt folder. It has no camera code: it only lets apt resolve
#    the name and makes `import picamera2` fail the way a device without a camera does.
# 2. a fresh copy of the base; deploy/install.sh --no-coral from a copy of this
#    checkout, run inside the root as on a device (apt, user, venv, locked pip
#    install with --require-hashes, config, unit).
# 3. inside the root: `edge selftest` with a simulation config, `edge embed` on the
#    test faces, and the perception, bundle and pipeline tests that need no camera
#    (pytest from deploy/lock/requirements-test.txt, in a folder beside the venv).
# 4. the same faces on this host (x86-64, .venv) and a summary: numpy/cv2 in the
#    device venv, faces and scores arm64 vs x86-64, tests passed.
#
# Emulation traps handled here: qemu-user shows the host's /proc/cpuinfo, on which
# XNNPACK's ARM feature detection crashes, so an ARM cpuinfo is bound over it and
# QEMU_CPU names the Pi's core (cortex-a72 Pi 4, cortex-a76 Pi 5); the root gets the
# host's /etc/hosts and resolv.conf; pip and apt inside use the host's CA bundle.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
CACHE=${EDGE_PI_CHECK_CACHE:-/var/cache/edge-pi-check}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_CA=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PI=4
KEEP=0
STAGE=all
while [ $# -gt 0 ]; do
  case "$1" in
    --pi) PI=${2:?}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --base-only) STAGE=base; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "pi-check: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$PI" in
  4) QEMU_CPU=cortex-a72 ;;
  5) QEMU_CPU=cortex-a76 ;;
  *) echo "pi-check: --pi must be 4 or 5" >&2; exit 2 ;;
esac
CPUINFO=$HERE/cpuinfo-$QEMU_CPU
BASE=$CACHE/bookworm-arm64
# Not on a device: the broker and openssl that the simulation and tests/test_selftest.py use.
TEST_PACKAGES="mosquitto openssl"
ROOT=$CACHE/run
OUT=$SRC/.cache/pi-check
LOG=$OUT/pi-check.log
T0=$(date +%s)

say() { printf 'pi-check [%4ds]: %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf 'pi-check: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap, chroot, mounts)"
[ "$(uname -m)" = x86_64 ] || die "meant for an x86-64 build host; on a Pi run deploy/install.sh"
[ -f "$HOST_CA" ] || die "no CA bundle at $HOST_CA (set HOST_CA_BUNDLE)"
mkdir -p "$CACHE" "$OUT"

# --- host tools and binfmt -----------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -e /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${need[@]}"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 || update-binfmts --import qemu-aarch64
fi
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
  || die "qemu-aarch64 binfmt lacks the F flag: a chroot cannot find the interpreter"

# --- mounts for a root; undone on exit --------------------------------------------------
MOUNTED=()
mount_root() { # mount_root DIR
  local r=$1
  mount -t proc proc "$r/proc"; MOUNTED+=("$r/proc")
  mount --bind "$CPUINFO" "$r/proc/cpuinfo"; MOUNTED+=("$r/proc/cpuinfo")
  mount --rbind /dev "$r/dev"; mount --make-rslave "$r/dev"; MOUNTED+=("$r/dev")
  mount -t sysfs -o ro sysfs "$r/sys"; MOUNTED+=("$r/sys")
  mount -t tmpfs tmpfs "$r/run"; MOUNTED+=("$r/run")
  mkdir -p "$r/tmp" "$CACHE/apt-archives" "$CACHE/pip-cache" "$r/var/cache/apt/archives" \
    "$r/root/.cache/pip"
  mount --bind "$CACHE/apt-archives" "$r/var/cache/apt/archives"; MOUNTED+=("$r/var/cache/apt/archives")
  mount --bind "$CACHE/pip-cache" "$r/root/.cache/pip"; MOUNTED+=("$r/root/.cache/pip")
  cp /etc/hosts "$r/etc/hosts"
  cp -L /etc/resolv.conf "$r/etc/resolv.conf"
  install -D -m 0644 "$HOST_CA" "$r/usr/local/share/edge-pi-check/host-ca.crt"
}
umount_all() {
  local i
  for (( i=${#MOUNTED[@]}-1; i>=0; i-- )); do
    umount -l "${MOUNTED[$i]}" 2>/dev/null || true
  done
  MOUNTED=()
}
trap umount_all EXIT

# Run a command inside a root as the device would: arm64 under QEMU_CPU, clean env.
in_root() { # in_root DIR CMD...
  local r=$1; shift
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 TERM=dumb QEMU_CPU="$QEMU_CPU" DEBIAN_FRONTEND=noninteractive \
    PIP_CERT=/usr/local/share/edge-pi-check/host-ca.crt \
    SSL_CERT_FILE=/usr/local/share/edge-pi-check/host-ca.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    chroot "$r" "$@"
}

# --- 1. base root (cached) ----------------------------------------------------------------
# The apt packages install.sh installs on a device, read from install.sh itself.
apt_packages() {
  sed -n '/^APT_PACKAGES=(/,/^)/p' "$SRC/deploy/install.sh" | sed '1d;$d' | tr -s ' \n' ' '
}

build_standin() { # build_standin ROOT: the local apt folder with the stand-in package
  local r=$1 repo=$1/var/local/edge-pi-check-standin stage
  stage=$(mktemp -d)
  mkdir -p "$repo" "$stage/DEBIAN" "$stage/usr/lib/python3/dist-packages/picamera2"
  cp "$HERE/standin_picamera2/__init__.py" "$stage/usr/lib/python3/dist-packages/picamera2/"
  cp "$HERE/standin_picamera2/control" "$stage/DEBIAN/control"
  dpkg-deb --root-owner-group -Zxz -b "$stage" "$repo/python3-picamera2-standin.deb" >/dev/null
  rm -rf "$stage"
  local deb=$repo/python3-picamera2-standin.deb
  {
    dpkg-deb -f "$deb"
    printf 'Filename: ./python3-picamera2-standin.deb\nSize: %s\nSHA256: %s\n\n' \
      "$(stat -c %s "$deb")" "$(sha256sum "$deb" | cut -d' ' -f1)"
  } >"$repo/Packages"
  printf 'deb [trusted=yes] file:/var/local/edge-pi-check-standin ./\n' \
    >"$r/etc/apt/sources.list.d/edge-pi-check-standin.list"
}

build_base() {
  local tmp=$CACHE/bookworm-arm64.tmp
  if [ -f "$tmp/.edge-debootstrap-done" ]; then
    say "debootstrap done before in $tmp; resuming with apt"
  else
    rm -rf "$tmp"
    say "debootstrap arm64 bookworm into $tmp (slow under emulation; once)"
    debootstrap --arch=arm64 --variant=minbase --include=ca-certificates,systemd \
      bookworm "$tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $CACHE/debootstrap.log"
    touch "$tmp/.edge-debootstrap-done"
  fi
  cat >"$tmp/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  printf 'APT::Install-Recommends "false";\n' >"$tmp/etc/apt/apt.conf.d/99edge-pi-check"
  build_standin "$tmp"
  mount_root "$tmp"
  # Pre-install what install.sh asks apt for, so each run's apt step is a quick no-op;
  # install.sh still runs apt-get update/install itself on every run.
  say "apt-get install $(apt_packages) (once)"
  # shellcheck disable=SC2046
  in_root "$tmp" /bin/sh -c "apt-get update -qq && apt-get install -y -qq $(apt_packages) \
      python3-picamera2 $TEST_PACKAGES" >"$CACHE/base-apt.log" 2>&1 \
    || die "apt-get in the base root failed; see $CACHE/base-apt.log"
  umount_all
  date -u +%FT%TZ >"$tmp/.edge-pi-check-base"
  rm -rf "$BASE"
  mv "$tmp" "$BASE"
}

if [ ! -f "$BASE/.edge-pi-check-base" ]; then
  build_base
else
  say "base root cached at $BASE (built $(cat "$BASE/.edge-pi-check-base"))"
fi
[ "$STAGE" = all ] || exit 0

# --- 2. a fresh root and the installer, as on a device ---------------------------------------
say "fresh copy of the base root at $ROOT"
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
mount_root "$ROOT"
build_standin "$ROOT"   # the checkout's stand-in, also when the base is older

# The checkout's tracked files (as a clean clone would have them) and the test faces.
make -C "$SRC" --no-print-directory testdata >/dev/null
mkdir -p "$ROOT/root/edge-src" "$ROOT/root/testdata"
git -C "$SRC" ls-files -z | (cd "$SRC" && tar --null -T - -cf -) | tar -C "$ROOT/root/edge-src" -xf -
cp -rL "$SRC/.cache/testdata/." "$ROOT/root/testdata/"

: >"$LOG"
say "deploy/install.sh --no-coral inside the arm64 root (log: $LOG)"
if ! in_root "$ROOT" /root/edge-src/deploy/install.sh --source /root/edge-src --no-coral \
    >>"$LOG" 2>&1; then
  tail -n 30 "$LOG" >&2
  die "install.sh failed inside the root"
fi

# --- 3. the firmware inside the root ------------------------------------------------------------
say "test tools (deploy/lock/requirements-test.txt) into /opt/edge-pi-check/testtools"
in_root "$ROOT" /opt/edge/venv/bin/python -m pip install --quiet --require-hashes \
  --only-binary=:all: --no-deps --target /opt/edge-pi-check/testtools \
  -r /root/edge-src/deploy/lock/requirements-test.txt >>"$LOG" 2>&1 \
  || die "test tools did not install; see $LOG"
install -m 0755 "$HERE/inside.sh" "$ROOT/root/inside.sh"
say "inside the root: versions, edge selftest (simulation), edge embed, tests"
set +e
in_root "$ROOT" /bin/bash /root/inside.sh >>"$LOG" 2>&1
INSIDE_RC=$?
set -e

# edge.service runs with ProcSubset=pid: no /proc/cpuinfo, which XNNPACK's ARM CPU
# detection reads. The same faces again in a root whose /proc is mounted that way.
say "edge embed with the service's /proc (ProcSubset=pid: no /proc/cpuinfo)"
FACES="/root/testdata/t1.jpg /root/testdata/obama.jpg"
embed_timed() { # embed_timed NAME: float embed of the faces, seconds in NAME.seconds
  local t0 t1
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  in_root "$ROOT" /opt/edge/venv/bin/edge embed --json $FACES \
    >"$ROOT/root/out/$1.json" 2>"$ROOT/root/out/$1.stderr" || INSIDE_RC=1
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }' >"$ROOT/root/out/$1.seconds"
}
embed_timed embed-full-proc-aarch64
umount -l "$ROOT/proc/cpuinfo" && umount -l "$ROOT/proc"
mount -t proc -o subset=pid proc "$ROOT/proc"; MOUNTED+=("$ROOT/proc")
[ ! -e "$ROOT/proc/cpuinfo" ] || die "proc subset=pid still shows /proc/cpuinfo"
embed_timed embed-procsubset-aarch64
cp "$ROOT/root/out/"* "$OUT/"

# --- 4. the same faces on this host, and the summary ----------------------------------------------
say "the same faces on this host (x86-64, .venv)"
"$SRC/.venv/bin/edge" embed --json "$SRC"/.cache/testdata/t1.jpg "$SRC"/.cache/testdata/obama.jpg \
  >"$OUT/embed-x86_64.json"
"$SRC/.venv/bin/edge" embed --json --variant int8 "$SRC"/.cache/testdata/t1.jpg \
  "$SRC"/.cache/testdata/obama.jpg >"$OUT/embed-int8-x86_64.json"
"$SRC/.venv/bin/python" "$HERE/summary.py" --out "$OUT" --log "$LOG" \
  --seconds "$(( $(date +%s) - T0 ))" --qemu-cpu "$QEMU_CPU" | tee "$OUT/summary.txt"
SUMMARY_RC=${PIPESTATUS[0]}
umount_all
if [ "$KEEP" -eq 0 ]; then rm -rf "$ROOT"; fi
if [ "$INSIDE_RC" -ne 0 ] || [ "$SUMMARY_RC" -ne 0 ]; then
  die "pi-check FAILED (inside: $INSIDE_RC, summary: $SUMMARY_RC); see $LOG"
fi
say "pi-check passed in $(( $(date +%s) - T0 )) s; summary in $OUT/summary.txt"
