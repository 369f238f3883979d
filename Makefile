# Every target is idempotent: `setup` reinstalls only when pyproject.toml changed.
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= exported
DATASET_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup dataset browser run test lint bench clean

setup: $(VENV)/.installed dataset browser

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

dataset:
	@if [ ! -d $(DATASET_DIR) ] && command -v apt-get >/dev/null; then \
		apt-get update -q && apt-get install -y -q dataset-fashion-mnist; \
	fi

# The report page's test loads report.html in headless Chromium.
browser:
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then \
		apt-get update -q && apt-get install -y -q chromium; \
	fi

run: setup
	$(VENV)/bin/toolkit train --out $(OUT)
	$(VENV)/bin/toolkit export --out $(OUT)
	$(VENV)/bin/toolkit compare --out $(OUT)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) -m tests.bench --out $(OUT)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
	find $(OUT) -mindepth 1 ! -name README.md -exec rm -rf {} +
