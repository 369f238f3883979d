# Every target is idempotent: `setup` reinstalls only when pyproject.toml changed.
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= exported
DATASET_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup system run test lint bench clean

setup: $(VENV)/.installed system

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,cluster]'
	touch $@

# Debian packages, each installed only when missing (one apt-get update for all of them) and
# without the packages they merely recommend (chromium's pull in systemd and cups):
# the Fashion-MNIST files, g++ (the tflite-micro tests compile the generated C arrays),
# chromium (the report page's test loads report.html in a real browser) and openssh-server
# (the `--device ssh://` tests start a real sshd on loopback) and iproute2 (the `--cluster` tests
# bring up loopback in the network namespace their Ray cluster runs in) and qemu-user (the
# AVX2-only CPU that tests/test_cpu_without_vnni.py runs ONNX Runtime's int8 on).
system:
	@missing=""; \
	[ -d $(DATASET_DIR) ] || missing="$$missing dataset-fashion-mnist"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing="$$missing iproute2"; \
	command -v qemu-x86_64 >/dev/null || missing="$$missing qemu-user"; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi

run: setup
	$(VENV)/bin/toolkit train --out $(OUT)
	$(VENV)/bin/toolkit export --out $(OUT)
	$(VENV)/bin/toolkit compare --out $(OUT)

# One pytest worker per logical CPU (pytest-xdist; `auto` counts physical cores, one on a
# 2-vCPU VM with SMT), a module per worker at a time: module fixtures (a compare of every
# artifact, an sshd, a Ray cluster) are built once, not once per worker. The session's trained
# and exported folders are built by one worker for all, while the others run the modules that
# do not need them: tests/conftest.py orders the modules, which xdist then keeps.
# Bytecode caches are written even where PYTHONDONTWRITEBYTECODE is set (as on the machines
# here): the run starts dozens of interpreters (workers, fork servers, commands), each of which
# would compile toolkit's modules, and each worker rewrite every test module, from source again.
test: setup
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q -n logical --maxprocesses 4 --dist loadscope --no-loadscope-reorder

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

# `make bench QUICK=1` (or BENCH_QUICK=1) for a short development run; the README quotes the full one.
bench: setup
	$(PY) -m tests.bench --out $(OUT) $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
	find $(OUT) -mindepth 1 ! -name README.md -exec rm -rf {} +
