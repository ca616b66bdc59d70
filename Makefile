# `make run` runs the bot; with no DISCORD_TOKEN (environment or .env) it runs the
# loopback demo instead: simulated speakers, the real bot, /record start and stop;
# `make test` runs the test suite. Both install what they need first, tests and demo included.
# `make install` installs only what production needs: libopus0 and the package, no test extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime

.PHONY: run test bench setup install clean

setup: $(STAMP)

install: $(RUNTIME_STAMP)

$(STAMP): pyproject.toml deploy/system-packages.sh tests/system-packages.sh
	./tests/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(RUNTIME_STAMP): pyproject.toml deploy/system-packages.sh
	./deploy/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet .
	touch $(RUNTIME_STAMP)

run: $(STAMP)
	@if [ -n "$$DISCORD_TOKEN" ] || grep -qs '^DISCORD_TOKEN=..*' .env; then \
		$(PY) -m bot; \
	else \
		echo "No DISCORD_TOKEN set: running the loopback demo (see README)."; \
		$(PY) -m tests.demo; \
	fi

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	./tests/bench/system-packages.sh
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
