# The README's two commands: `make demo` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.sizeagg/dagster_home
BUSINESS_TZ := $(or $(SIZEAGG_TIMEZONE),Asia/Shanghai)
PORT ?= 3000
# The demo's partitions start on the first day of the quarter of its first raw row
# (`sizeagg start-date`, written by `make demo`); an exported SIZEAGG_START_DATE wins.
DEMO_ENV_FILE := .sizeagg/demo.env
START_ENV = env $$(test -n "$$SIZEAGG_START_DATE" || cat $(DEMO_ENV_FILE) 2>/dev/null)

.PHONY: venv demo test postgres ui lineage screenshots lint bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

venv: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: venv $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/sizeagg init-db
	$(BIN)/sizeagg demo-data --instances 20 --databases 15 --days 120 --quarter-aligned
	echo "SIZEAGG_START_DATE=$$($(BIN)/sizeagg start-date)" > $(DEMO_ENV_FILE)
	$(START_ENV) $(BIN)/sizeagg run --date $$(TZ=$(BUSINESS_TZ) date -d '14 days ago' +%F)..$$(TZ=$(BUSINESS_TZ) date -d yesterday +%F)
	$(START_ENV) $(BIN)/python scripts/demo_insight.py
	$(BIN)/sizeagg sessions --limit 15
	@echo
	@echo "Open the UI on these runs: make ui, then http://127.0.0.1:$(PORT)"

# The suite runs every database test on SQLite and on a PostgreSQL server it starts
# itself; `postgres` installs Debian's server package when it is missing (root + apt).
# The tests marked `slow` start Dagster processes or `sizeagg run` subprocesses and wait
# on them; two at once overload a 2-core machine. So one pytest session runs them one
# after the other while a second runs the others three at a time (pytest-xdist); the
# slow session's output follows the other's, and either failing fails the target.
test: venv postgres
	mkdir -p .sizeagg
	$(BIN)/pytest -q -m slow > .sizeagg/slow-tests.log 2>&1 & slow=$$!; \
	$(BIN)/pytest -q -n 3 -m 'not slow'; fast=$$?; \
	wait $$slow; status=$$?; cat .sizeagg/slow-tests.log; \
	exit $$(( fast || status ))

postgres:
	.ci/ensure-postgres

# Webserver + daemon (schedules, sensors, backfills, run queue) on 127.0.0.1 only (no
# login: docs/operations.md#who-can-reach-the-ui), with the persistent DAGSTER_HOME above,
# the shipped dagster.yaml and the demo's partition start. Ctrl-C stops both.
ui: venv $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/sizeagg init-db
	$(START_ENV) $(BIN)/dagster dev -h 127.0.0.1 -p $(PORT) -w workspace.yaml

# Screenshot the lineage graph of the running UI (`make ui` in another terminal).
lineage: venv
	$(BIN)/python scripts/render_lineage.py --url http://127.0.0.1:$(PORT)

# The UI pages of docs/ui.md as screenshots under docs/screenshots/ (`make ui` running).
screenshots: venv
	$(BIN)/python scripts/screenshots.py --url http://127.0.0.1:$(PORT)

# The aggregation benchmark (issue 7): 38–55 min per engine at the default size;
# writes benchmarks/results.md. BENCH_ARGS="--quick" for a CI-sized run, "--postgres URL"
# to add PostgreSQL (postgresql+psycopg2://…; the run uses and drops its own two schemas).
BENCH_ARGS ?=
bench: venv
	$(BIN)/python benchmarks/aggregation_bench.py $(BENCH_ARGS)

# Style, types (mypy, configured in pyproject.toml) and the definitions as `dg` loads them.
lint: venv $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

clean:
	rm -rf .sizeagg
