# recpipe — every target creates the virtualenv it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test lint bench sample-data clean help

help:
	@echo "make demo         create .venv, install recpipe, process sample_data/ into ./out/"
	@echo "make test         install test dependencies and run the whole suite"
	@echo "make lint         ruff check, ruff format --check, mypy, the import-layer contracts"
	@echo "make bench        performance against aws-cli+ffmpeg, yt-dlp, bare ffmpeg; memory (see SPEC)"
	@echo "make sample-data  regenerate sample_data/ with ffmpeg"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	@touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.runtime
	$(PIP) install -e '.[test]'
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.test
	$(PIP) install -e '.[test,dev]'
	@touch $@

demo: $(VENV)/.runtime
	$(BIN)/recpipe process sample_data --profile sample_data/start_request.json --dest out
	@echo
	@echo "Outputs are in ./out/ :"
	@find out -type f | sort | sed 's/^/  /'

# Azurite, Microsoft's Azure Storage emulator, for the Azure tests (npm needs no root; node must be there).
AZURITE_VERSION := 3.35.0
.azurite/.installed:
	@command -v npm >/dev/null || { echo "make test needs npm (Node.js) to install Azurite for the Azure tests" >&2; exit 1; }
	npm install --prefix .azurite --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)
	@touch $@

# Debian's Chromium, for the browser test of the HTML report: installed when make runs as root with apt
# (as CI does); elsewhere that one test is skipped, and says why.
.PHONY: chromium
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium and chromium-driver (apt)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "NOTE: Chromium is not installed and cannot be without root: the HTML report's browser test is skipped" >&2; fi

test: $(VENV)/.test .azurite/.installed chromium
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check pipeline stages tests
	$(BIN)/ruff format --check pipeline stages tests
	$(BIN)/mypy
	$(BIN)/lint-imports

# The tools recpipe is compared with, in their own virtualenv (awscli pins its own botocore).
BENCH_TOOLS := .bench/tools
$(BENCH_TOOLS)/.installed:
	$(PYTHON) -m venv $(BENCH_TOOLS)
	$(BENCH_TOOLS)/bin/python -m pip --disable-pip-version-check -q install awscli==1.46.3 yt-dlp==2026.10.26
	@touch $@

# Every comparison runs even when one fails or misses; the exit status says whether all targets were met.
bench: $(VENV)/.test $(BENCH_TOOLS)/.installed
	$(BIN)/python -m tests.bench.run --tools $(BENCH_TOOLS) --cache .bench/cache

sample-data: $(VENV)/.runtime
	$(BIN)/recpipe sample sample_data --force

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
