# `make run` runs the bot; with no DISCORD_TOKEN (environment or .env) it runs the
# loopback demo instead: simulated speakers, the real bot, /record start and stop;
# `make test` runs the test suite. Both install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml deploy/system-packages.sh
	./deploy/system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

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
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
