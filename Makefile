# Two commands on a fresh machine:  make report   and   make test
# Both create .venv and install the kit on first use (about 5 minutes on 2 cores).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= report

export NUMBA_CACHE_DIR := $(CURDIR)/$(VENV)/numba_cache
export PYTHONHASHSEED := 0
# Quarto for the reports, when installed into the virtualenv (`make quarto`, or CI from ../shared/);
# otherwise the quarto on PATH, if any; without one, pages are rendered by nbconvert
export PATH := $(CURDIR)/$(VENV)/quarto/bin:$(PATH)

.PHONY: install quarto report test test-fast test-unit test-notebooks test-postgres test-ray test-prometheus lint bench clean-venv lab paper-replay notebooks

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
	@$(PY) -c "from kit.reports.render import renderer_label, renderer_name; print('reports rendered by', renderer_label(renderer_name()))"
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

## make test-ray: a Ray head and a second Ray node on 127.0.0.1, the smoke profile run on them with
## --backend ray --address, a check that tasks ran on both nodes, then ray stop. CI runs it.
test-ray: $(STAMP)
	PY=$(PY) bash scripts/ray_test.sh

## make test-prometheus: promtool checks of monitoring/ (config, alerting rules and their unit tests), then the
## monitoring tests against a throwaway Pushgateway and Prometheus (Debian's prometheus and prometheus-pushgateway
## packages; installed with apt-get when missing and run as root): `python -m kit daily` on a replayed day and a
## profile run, their metrics read back from Prometheus' HTTP API. CI runs it after make test-postgres.
test-prometheus: $(STAMP)
	bash scripts/prometheus_test.sh

## make paper-replay: the paper-trading loop replayed over the last year of the committed data (report under reports/)
paper-replay: $(STAMP)
	$(PY) -m kit run --profile paper

## make quarto: optional Quarto for the reports (pip's kit[quarto], which downloads Quarto itself, or,
## in this workplace, ../shared/tools/quarto/install.sh). A failure is reported once; nbconvert then renders.
quarto: $(STAMP)
	@if [ -f ../shared/tools/quarto/install.sh ]; then \
	  bash ../shared/tools/quarto/install.sh $(CURDIR)/$(VENV)/quarto >$(VENV)/quarto-install.log 2>&1 \
	  && echo "quarto: $$($(VENV)/quarto/bin/quarto --version) in $(VENV)/quarto" \
	  || echo "quarto: not installed (see $(VENV)/quarto-install.log); reports are rendered by nbconvert"; \
	elif $(PY) -m pip install --quiet -e '.[quarto]' >$(VENV)/quarto-install.log 2>&1; then \
	  echo "quarto: installed with pip's kit[quarto]: $$($(VENV)/bin/quarto --version)"; \
	else \
	  echo "quarto: not installed: pip install 'kit[quarto]' failed (quarto-cli downloads Quarto from GitHub while"; \
	  echo "  installing: no internet?). Details in $(VENV)/quarto-install.log. Reports are rendered by nbconvert;"; \
	  echo "  other ways to get Quarto: conda install -c conda-forge quarto, or the installer from quarto.org."; \
	fi

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
