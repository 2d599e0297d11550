# netmetrix developer commands. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || { command -v sudo >/dev/null && echo sudo; })
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.DEFAULT_GOAL := help
.PHONY: help venv system-deps lint docs test demo bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed: installing python3-venv with apt-get"; \
	  $(APT) update -qq && $(APT) install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,postgres,docs,demo,plot]'
	$(BIN)/python -m compileall -q src  # as pip does for an installed netmetrix (PYTHONDONTWRITEBYTECODE)
	@touch $@

venv: $(STAMP) ## create .venv with netmetrix and its test tools

system-deps: ## install sshd, PostgreSQL, Chromium, Prometheus, Alertmanager, monitoring-plugins, BusyBox and shellcheck with apt-get when missing (tests and lint need them)
	@if [ ! -x /usr/sbin/sshd ]; then \
	  echo "sshd not found: installing openssh-server with apt-get"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends openssh-server openssh-client; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "PostgreSQL server not found: installing postgresql with apt-get"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends postgresql; \
	fi
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/prometheus ]; then \
	  echo "chromium, chromedriver or prometheus not found: installing them with apt-get"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends \
	    chromium chromium-driver prometheus; \
	fi
	@if [ ! -x /usr/bin/prometheus-alertmanager ] || [ ! -x /usr/lib/nagios/plugins/check_disk ] || [ ! -x /bin/busybox ]; then \
	  echo "alertmanager, monitoring-plugins or busybox not found: installing them with apt-get"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends \
	    prometheus-alertmanager monitoring-plugins-basic busybox; \
	fi
	@if [ ! -x /usr/bin/shellcheck ]; then \
	  echo "shellcheck not found (make lint checks probe.sh with it): installing it with apt-get"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends shellcheck; \
	fi

lint: $(STAMP) ## ruff, mypy (--strict on src, relaxed on tests and bench), vermin (probe: Python 3.6), shellcheck (probe.sh: POSIX sh)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/vermin -q --no-tips --violations -t=3.6- --eval-annotations src/netmetrix/probe.py
	@command -v shellcheck >/dev/null || { echo "shellcheck not found: run make system-deps"; exit 1; }
	shellcheck -s sh src/netmetrix/probe.sh

docs: $(STAMP) ## build the docs/ site into site/ with mkdocs --strict (a broken link fails it)
	$(BIN)/mkdocs build --strict --quiet --site-dir site

test: $(STAMP) system-deps lint docs ## lint, build the docs, then the whole test suite against real sshd processes
	$(BIN)/pytest -q

demo: $(STAMP) ## run the whole job on an embedded local fleet (no root, sshd or network)
	$(BIN)/netmetrix demo

BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS  ?=
# bench/watch_bench.py takes its own options; --quick in BENCH_ARGS reaches it too
WATCH_BENCH_ARGS ?= $(filter --quick,$(BENCH_ARGS))
# bench/scale_bench.py too (its options: python bench/scale_bench.py --help)
SCALE_BENCH_ARGS ?= $(filter --quick,$(BENCH_ARGS))
WEB_BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,postgres,docs,demo,plot,bench]'
	@touch $@

bench: $(BENCH_STAMP) system-deps ## execute vs the spec design, ansible, parallel-ssh; execute vs bare asyncssh on 1,000 and 10,000 simulated hosts; watch (simulated fleet + farm); the dashboard on 1,000 hosts; writes bench/RESULTS.md (BENCH_ARGS=--quick, SCALE_BENCH_ARGS="--hosts 5000", WEB_BENCH_ARGS="--hosts 100")
	@[ -x /usr/bin/time ] || { echo "GNU time not found (it measures peak RSS): installing time with apt-get"; \
	  $(APT) update -qq && $(APT) install -y -qq time; }
	BENCH_COMMAND="make bench $(BENCH_ARGS)" $(BIN)/python bench/harness.py $(BENCH_ARGS)
	BENCH_COMMAND="make bench $(BENCH_ARGS)" $(BIN)/python bench/scale_bench.py $(SCALE_BENCH_ARGS)
	BENCH_COMMAND="make bench $(BENCH_ARGS)" $(BIN)/python bench/watch_bench.py $(WATCH_BENCH_ARGS)
	$(BIN)/python bench/web_bench.py --markdown bench/RESULTS.md $(WEB_BENCH_ARGS)

clean: ## remove the virtualenv, the caches and the built site
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache .hypothesis
