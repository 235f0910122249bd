# Two commands on a fresh machine:  make report   and   make test
# Both create .venv and install the kit on first use (about 5 minutes on 2 cores).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= report

export NUMBA_CACHE_DIR := $(CURDIR)/$(VENV)/numba_cache
export PYTHONHASHSEED := 0

.PHONY: install report test test-fast test-unit test-notebooks test-postgres test-prometheus lint bench clean-venv lab paper-replay notebooks

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	mkdir -p $(NUMBA_CACHE_DIR)
	touch $(STAMP)

## make report: run the main profile on the committed S&P 500 data; HTML under reports/
report: $(STAMP)
	$(PY) -m kit run --profile $(PROFILE)

## make test: the whole suite (unit tests, then every notebook with its smoke defaults)
test: $(STAMP)
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbmake --nbmake-timeout=1200 notebooks/

## make test-fast: the unit tests without those marked slow (real processes, notebooks, training), for the edit loop
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-unit: $(STAMP)
	$(PY) -m pytest -q tests

test-notebooks: $(STAMP)
	$(PY) -m pytest -q --nbmake --nbmake-timeout=1200 notebooks/

## make test-postgres: the registry and ledger tests against a throwaway PostgreSQL server (Debian's
## postgresql package; installed with apt-get when missing and run as root). CI runs it after make test.
test-postgres: $(STAMP)
	bash scripts/postgres_test.sh

## make test-prometheus: promtool checks of monitoring/ (config, alerting rules and their unit tests), then the
## monitoring tests against a throwaway Pushgateway and Prometheus (Debian's prometheus and prometheus-pushgateway
## packages; installed with apt-get when missing and run as root): `python -m kit daily` on a replayed day and a
## profile run, their metrics read back from Prometheus' HTTP API. CI runs it after make test-postgres.
test-prometheus: $(STAMP)
	bash scripts/prometheus_test.sh

## make paper-replay: the paper-trading loop replayed over the last year of the committed data (report under reports/)
paper-replay: $(STAMP)
	$(PY) -m kit run --profile paper

lint: $(STAMP)
	$(PY) -m ruff check kit tests benchmarks scripts

## make notebooks: write notebooks/*.ipynb from their jupytext sources notebooks/*.py (outputs stripped)
notebooks: $(STAMP)
	$(PY) scripts/notebooks.py sync

bench: $(STAMP)
	$(PY) benchmarks/run.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
