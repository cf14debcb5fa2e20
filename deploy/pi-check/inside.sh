#!/bin/bash
# Run by deploy/pi-check/pi-check.sh inside the arm64 root, after install.sh: the
# installed firmware (/opt/edge/venv) on a simulation, the test faces and the tests
# that need no camera. Writes /root/out/*.json; exits non-zero if anything failed.
set -uo pipefail

VENV=/opt/edge/venv
SRC=/root/edge-src
OUT=/root/out
SIM=/var/lib/edge-sim
PORT=18883
TESTS_PERCEPTION="test_detector.py test_embedder.py test_align.py test_runtime.py test_quality.py
  test_tiling.py test_manifest.py test_edgetpu.py test_stack.py test_recognisers.py
  test_landmarks.py test_pick.py test_image_bomb.py"
TESTS_BUNDLE="test_bundle_refusals.py test_bundle_store.py test_verify.py test_envelope.py
  test_order.py test_trust_rotation.py test_order_replay.py test_trust_state.py"
TESTS_PIPELINE="test_track.py test_matcher.py test_motion.py test_sources.py test_selftest.py
  test_recognizer.py test_operating_point.py"
mkdir -p "$OUT"
rc=0
step() { printf '\n=== %s\n' "$*"; }

step "first boot of an image: install.sh --first-boot (as edge-firstboot.service), offline"
# What `install.sh --root DIR --wheels DIR` leaves: the locked wheels, no venv, the marker.
"$VENV/bin/python" -m pip download --quiet --require-hashes --only-binary=:all: --no-deps \
  -d /opt/edge/wheels -r /opt/edge/deploy/requirements-device.txt || rc=1
rm -rf "$VENV"
touch /opt/edge/.first-boot
/opt/edge/deploy/install.sh --first-boot || rc=1
if [ -e /opt/edge/.first-boot ]; then echo "first boot left its marker"; rc=1; fi

step "platform"
uname -m
grep -m1 Model /proc/cpuinfo
echo "QEMU_CPU=$QEMU_CPU"
"$VENV/bin/python" - <<'EOF' | tee "$OUT/versions.json"
import json, platform, sys
import numpy, cv2, ai_edge_litert
print(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                  "numpy": numpy.__version__, "numpy_file": numpy.__file__,
                  "cv2": cv2.__version__, "cv2_file": cv2.__file__,
                  "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
                  "venv": sys.prefix}))
EOF
"$VENV/bin/python" -m pip list --path "$(ls -d $VENV/lib/python3*/site-packages)" 2>/dev/null \
  | tee "$OUT/venv-packages.txt"
# pip check, less what apt's own packages declare: Debian splits cffi, so apt's pynacl
# "requires cffi" that pip cannot see (python3-cffi-backend provides it).
"$VENV/bin/python" - <<'EOF' || rc=1
import subprocess, sys
from importlib.metadata import distribution
out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True).stdout
bad = [line for line in out.splitlines() if line.strip() and not line.startswith("No broken")
       and not str(distribution(line.split()[0]).locate_file("")).startswith("/usr/lib/python3/")]
print("\n".join(bad) or "pip check: the venv's own packages are consistent")
sys.exit(1 if bad else 0)
EOF

step "edge selftest with a simulation config (edge.scenario.demo's provisioning, local mosquitto)"
rm -rf "$SIM"
install -d -o edge -g edge "$SIM"
cp -r /root/testdata "$SIM/testdata"
chown -R edge:edge "$SIM"
MOSQ_DIR=$(mktemp -d)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" >"$MOSQ_DIR/mosquitto.conf"
mosquitto -c "$MOSQ_DIR/mosquitto.conf" >"$MOSQ_DIR/mosquitto.log" 2>&1 &
MOSQ=$!
runuser -u edge -- "$VENV/bin/python" - "$SIM" "$PORT" <<'EOF' || rc=1
import sys
from pathlib import Path
from edge.scenario.demo import prepare
sim, port = Path(sys.argv[1]), int(sys.argv[2])
dep = prepare(sim / "device", sim / "testdata", port=port, realtime=False,
              extra_config="\n[models]\nedgetpu = false\n")
dep.state.mkdir(parents=True, exist_ok=True)  # install.sh makes /var/lib/edge on a device
EOF
# The chroot has no time daemon of its own: the clock check is skipped, as in a simulation.
runuser -u edge -- "$VENV/bin/edge" selftest --config "$SIM/device/edge.toml" --skip clock \
  | tee "$OUT/selftest.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
runuser -u edge -- "$VENV/bin/edge" selftest --config "$SIM/device/edge.toml" --skip clock --json \
  >"$OUT/selftest.json" || true
kill "$MOSQ" 2>/dev/null
wait "$MOSQ" 2>/dev/null

step "edge embed on the test faces (float and int8)"
FACES=(/root/testdata/t1.jpg /root/testdata/obama.jpg)
"$VENV/bin/edge" embed --json "${FACES[@]}" >"$OUT/embed-aarch64.json" || rc=1
"$VENV/bin/edge" embed --json --variant int8 "${FACES[@]}" >"$OUT/embed-int8-aarch64.json" || rc=1
"$VENV/bin/edge" embed "${FACES[@]}" || rc=1

step "tests that need no camera (pytest from the test lock, beside the venv)"
cd "$SRC" || exit 1
run_tests() { # run_tests NAME FILES...
  local name=$1; shift
  local files=()
  for f in "$@"; do files+=("tests/$f"); done
  PYTHONPATH=/opt/edge-pi-check/testtools EDGE_TESTDATA=/root/testdata \
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider -o addopts="" "${files[@]}" \
    2>&1 | tee "$OUT/tests-$name.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
}
# shellcheck disable=SC2086
run_tests perception $TESTS_PERCEPTION
# shellcheck disable=SC2086
run_tests bundle $TESTS_BUNDLE
# shellcheck disable=SC2086
run_tests pipeline $TESTS_PIPELINE
exit "$rc"
