# Two commands for a fresh machine (see README):
#   make demo   replay the bundled example log on the embedded store: no Kafka, no Redis
#   make test   lint, type-check, then the whole test suite against a real Kafka + Redis
# Both create .venv on first use. Services started by `make test` keep running so
# the next run starts in seconds; `make services-stop` stops them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV := .venv
BIN := $(VENV)/bin
# bench/ is linted when it exists; it is not there in every checkout.
LINT_PATHS := stream_sentinel tests $(wildcard bench)
PYTEST_ARGS ?=

# command:Debian package, for what the tests run besides Python: redis-server and
# the broker's Java/Maven for scripts/services, promtool and a real Prometheus for
# the metrics tests, a real Alertmanager and amtool for the Alertmanager target
# and its example config, chromium for screenshots of the replay report.
SYSTEM_DEPS := redis-server:redis-server redis-cli:redis-tools prometheus:prometheus \
	promtool:prometheus prometheus-alertmanager:prometheus-alertmanager \
	amtool:prometheus-alertmanager chromium:chromium java:openjdk-17-jre-headless mvn:maven

.PHONY: test demo venv litellm-venv system-deps lint services-start services-stop mutation faults-under-load

# The stamp is newer than pyproject.toml once the install for its current
# contents succeeded, so an edited dependency list reinstalls and a failed
# install is retried. The report extra (matplotlib) is for `make demo` and the
# report tests; the service image leaves it out.
$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev,report]'
	@touch $@

venv: $(VENV)/.installed

# A real LiteLLM proxy for tests/integration/test_litellm_proxy.py, in a virtualenv
# of its own: its proxy extra is large and pins versions of its own. 1.108.7 is
# the newest whose proxy extra installs from the registries here.
LITELLM_VENV := .venv-litellm
LITELLM_VERSION := 1.108.7
$(LITELLM_VENV)/.installed: pyproject.toml
	@test -x $(LITELLM_VENV)/bin/python || python3 -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python -m pip install --quiet 'litellm[proxy]==$(LITELLM_VERSION)' -e '.[litellm]'
	@touch $@

litellm-venv: $(LITELLM_VENV)/.installed

# One apt-get update, and only when something is missing: a machine that has
# everything installs nothing and needs no network.
system-deps:
	@missing=(); \
	for pair in $(SYSTEM_DEPS); do \
		command -v "$${pair%%:*}" >/dev/null || missing+=("$${pair#*:}"); \
	done; \
	if (( $${#missing[@]} )); then \
		echo "installing Debian packages: $${missing[*]}" >&2; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$(printf '%s\n' "$${missing[@]}" | sort -u); \
	fi

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy --strict stream_sentinel

# The gates run before the services start: they need neither, and a lint error
# should not cost a broker start-up. The exports are captured before eval, since
# `eval "$$(cmd)"` would hide a failing start behind eval's own success.
test: venv system-deps lint litellm-venv
	exports="$$(scripts/services start)"; \
	eval "$$exports"; \
	$(BIN)/pytest $(PYTEST_ARGS)

# The fault suite FAULT_RUNS times in a row (default 5) while `stress-ng --cpu
# STRESS_CPUS` keeps the machine busy, as on a loaded CI runner; stress-ng is
# stopped whatever happens. Each run's result goes to out/faults-under-load.txt
# (docs/reliability.md keeps the figures). Not part of `make test`: ~45 min.
FAULT_RUNS ?= 5
STRESS_CPUS ?= 2
faults-under-load: venv system-deps
	@command -v stress-ng >/dev/null || { echo "stress-ng missing: apt-get install stress-ng" >&2; exit 2; }
	@mkdir -p out
	exports="$$(scripts/services start)"; \
	eval "$$exports"; \
	stress-ng --cpu $(STRESS_CPUS) --timeout 4h --quiet & stress=$$!; \
	trap 'kill $$stress 2>/dev/null; wait $$stress 2>/dev/null' EXIT; \
	failed=0; : > out/faults-under-load.txt; \
	for run in $$(seq $(FAULT_RUNS)); do \
		start=$$(date +%s); \
		if $(BIN)/pytest -q tests/integration/test_faults.py > out/faults-run-$$run.log 2>&1; \
		then result=pass; else result=FAIL; failed=1; fi; \
		echo "run $$run: $$result in $$(( $$(date +%s) - start )) s: $$(tail -1 out/faults-run-$$run.log)" \
			| tee -a out/faults-under-load.txt; \
	done; \
	exit $$failed

demo: venv
	@mkdir -p out
	$(BIN)/stream-sentinel replay examples/demo.jsonl.gz --config examples/sentinel.toml \
		--report out/demo-report.html --timeline out/demo-timeline.jsonl

# Mutation check of the pure core against its unit tests (no servers; slow, so
# not part of `make test`): docs/testing.md. MODULES="rules stats" for a subset.
MODULES ?=
mutation: venv
	$(BIN)/python scripts/mutation.py $(MODULES)

services-start:
	@scripts/services start

services-stop:
	scripts/services stop
