# Every target bootstraps what it needs: the app virtualenv (.venv, from requirements/dev.lock)
# and, for SAM commands only, a separate one (.venv-sam) because aws-sam-cli pins boto3/pydantic;
# checkov, run by `make lint`, gets its own (.venv-checkov) for the same reason.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
CHECKOV_VENV := .venv-checkov
# sam build needs the Lambda runtime's interpreter (python3.13) on PATH; pyenv provides it here.
PY313_PYENV := $(shell pyenv versions --bare 2>/dev/null | grep -m1 '^3\.13')
SAM_ENV := SAM_CLI_TELEMETRY=0 $(if $(PY313_PYENV),PYENV_VERSION=$(PY313_PYENV))
PY313 := $(if $(PY313_PYENV),PYENV_VERSION=$(PY313_PYENV) python3.13,python3.13)

# Operator commands act on the running `make dev` stack unless STACK=<name> (a deployed stack)
# or ENV=<samconfig environment> names one.
STACK ?=
ENV ?=
OPS := $(PY) -m ops $(if $(STACK),--stack $(STACK)) $(if $(ENV),--config-env $(ENV))
SAM_ENV_FLAG := $(if $(ENV),--config-env $(ENV))

.PHONY: help demo dev test soak lint typecheck unit bench bench-quick bench-scale bench-large bench-latency \
	bench-heal build validate deploy invoke lock clean webhook-sql backfill resync rebuild heal dlq redrive \
	verify status \
	account-setup logs sync delete

## help: list every target
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## //' -e 's/: /\t/' | expand -t 16

# The first install takes about a minute: say so, and count the packages as pip collects them.
$(VENV)/.installed: requirements/dev.lock
	@echo "Installing the pinned dependencies into $(VENV) (first run, or after requirements/dev.lock changed)..."
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(PY) -m pip install --disable-pip-version-check --progress-bar off \
		-r requirements/dev.lock 2>$(VENV)/pip-errors.log | awk '/^Collecting/ \
		{ printf "\r  %d packages collected", ++n; fflush() } /^Installing/ { print "\n  installing..." }' \
		|| { cat $(VENV)/pip-errors.log >&2; exit 1; }
	@touch $@

$(SAM_VENV)/.installed: requirements/sam.lock
	@test -x $(SAM_VENV)/bin/python || $(PY313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -qq --disable-pip-version-check -r requirements/sam.lock
	@touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.lock
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -qq --disable-pip-version-check -r requirements/checkov.lock
	@touch $@

## demo: run the whole pipeline on this machine (no Docker, no AWS account) and show it converge
demo: $(VENV)/.installed
	$(PY) -m local.demo

## dev: start the local stack in the foreground (Ctrl-C stops it)
##   options: PORT=3000 (API) SUPABASE_PORT=54321 HOST=127.0.0.1 DATA=.local-data/db (keep rows)
##            WEBHOOK_SECRET=... SUPABASE_URL=... SUPABASE_KEY=... SUPABASE_ANON_KEY=... (a real
##            project) TABLES=a,b POLICIES='{"b": {"key": "slug"}}' (default for a real project:
##            what samconfig.toml deploys, ENV=<environment>)
##            BACKFILL=no (start with an empty cache, as a fresh deployment: a first change fills)
##            DROP_WEBHOOKS=0.1 (fail that share of webhook deliveries, as Supabase loses some:
##            the reconciler heals them) SCHEDULES=no (no scheduled reconcile or resync)
dev: $(VENV)/.installed
	@$(PY) -m local.dev $(if $(DATA),--data-dir $(DATA)) $(if $(PORT),--port $(PORT)) \
		$(if $(SUPABASE_PORT),--supabase-port $(SUPABASE_PORT)) $(if $(HOST),--host $(HOST)) \
		$(if $(filter no,$(BACKFILL)),--no-backfill) $(if $(ENV),--config-env $(ENV)) \
		$(if $(DROP_WEBHOOKS),--drop-webhooks $(DROP_WEBHOOKS)) \
		$(if $(filter no,$(SCHEDULES)),--no-schedules)

## webhook-sql: print the SQL that creates a stack's Database Webhooks in Supabase (review, then run it)
webhook-sql: $(VENV)/.installed
	@$(OPS) webhook-sql

## invoke: Docker-free `sam local invoke`: make invoke FUNCTION=ReceiverFunction EVENT=events/receiver/insert.json
invoke: $(VENV)/.installed
	@$(PY) -m local.invoke $(FUNCTION) $(EVENT)

## test: lint, type-check, template lint, then every test (needs the SAM virtualenv too)
# Some tests check the template as CloudFormation transforms it, with samtranslator from there.
# xdist's default distribution (load): schemathesis gives the items of one parametrized test a
# single node id, which --dist loadfile/loadscope/loadgroup collapse to one item.
test: lint $(VENV)/.installed $(SAM_VENV)/.installed
	$(PY) -m pytest -n 2

## soak: the property tests with thousands of fresh examples each (slow; not part of `make test`)
soak: $(VENV)/.installed
	HYPOTHESIS_PROFILE=soak $(PY) -m pytest -n 2 -m property

## lint: ruff, mypy --strict, the layer's import rules, cfn-lint, checkov
lint: $(VENV)/.installed $(CHECKOV_VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy layers/common functions local ops tests bench
	PYTHONPATH=layers/common:functions $(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/cfn-lint template.yaml
# Every skipped checkov check is justified in the resource's Metadata (checkov: skip: comment).
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --quiet --compact --skip-download

## bench: benchmarks, reported as ratios against a baseline measured in the same run; writes
##   docs/BENCHMARKS.md, docs/benchmarks/figures.csv and plots (a few minutes, progress on stderr)
bench: $(VENV)/.installed
	$(PY) -m bench

## bench-quick: the same, briefly, written to .local-data/bench-quick/
bench-quick: $(VENV)/.installed
	$(PY) -m bench --quick

## bench-scale: the consumer at 1,000, 10,000 and 100,000 rows (about 30 minutes here);
##   replaces the "Consumer at scale" section of docs/BENCHMARKS.md
bench-scale: $(VENV)/.installed
	$(PY) -m bench.scale --rows 1000,10000,100000 --report

## bench-heal: the reconciler at 1,000, 10,000 and 100,000 rows with 0, 1, 10, 100 lost changes,
##   beside a full resync of the same table, and the heal latency end to end; replaces the
##   "Healing lost webhooks" section of docs/BENCHMARKS.md (about 50 minutes here)
bench-heal: $(VENV)/.installed
	$(PY) -m bench.heal --rows 1000,10000,100000 --report

## bench-large: a first fill of 1,000,000 rows on the moto server, its time and memory (not run;
##   make bench-latency fills 1,000,000 under the latency model in about 8 minutes here)
bench-large: $(VENV)/.installed
	$(PY) -m bench.scale --rows 1000000 --fill-only

## bench-latency: the functions under a network latency model (DynamoDB 5 ms, SQS 10 ms,
##   Supabase 25 ms...): critical path, change to visible, fills up to 1,000,000 rows, a burst,
##   cold starts (about an hour); replaces the "Under network latency" section of
##   docs/BENCHMARKS.md (QUICK=1: a few minutes, written to .local-data/bench-latency/)
bench-latency: $(VENV)/.installed
	$(PY) -m bench.latency_run $(if $(QUICK),--quick,--report)

# build / validate / deploy: the SAM CLI, from its own virtualenv
## validate: sam validate --lint
validate: $(SAM_VENV)/.installed
	$(SAM_ENV) $(SAM) validate --lint

## build: sam build, then bytecode for the Lambda runtime
build: validate
	$(SAM_ENV) $(SAM) build
	$(SAM_VENV)/bin/python -m ops.bytecode .aws-sam/build

## deploy: check samconfig's parameters and the account's API Gateway log role, build,
##   `sam deploy --guided`, then fill the cache
deploy: $(VENV)/.installed
	@$(PY) -m ops --config-env $(or $(ENV),default) check-deploy
	@$(PY) -m ops account-setup --check
	$(MAKE) --no-print-directory build
	$(SAM_ENV) $(SAM) deploy --guided $(SAM_ENV_FLAG) $(if $(STACK),--stack-name $(STACK))
	$(PY) -m ops $(if $(STACK),--stack $(STACK),--config-env $(or $(ENV),default)) check
	$(PY) -m ops $(if $(STACK),--stack $(STACK),--config-env $(or $(ENV),default)) backfill

## account-setup: once per account and region, give API Gateway its CloudWatch log role (never overwrites)
account-setup: $(VENV)/.installed
	@$(PY) -m ops account-setup

## backfill: fill or refill the cache from Supabase now (STACK=name for a deployed stack)
backfill: $(VENV)/.installed
	@$(OPS) backfill

## resync: the same as backfill (what the schedule sends)
resync: backfill

## rebuild: rebuild one table's list as a fresh version; readers keep the current one until
##   the new one is complete: make rebuild TABLE=articles (STACK=name / ENV=prod: deployed)
rebuild: $(VENV)/.installed
	@test -n "$(TABLE)" || { echo "usage: make rebuild TABLE=<cached table>"; exit 2; }
	$(OPS) rebuild --table $(TABLE)
## heal: one reconcile cycle of every cached table now (what ReconcileSchedule sends), and
##   what it found and healed
heal: $(VENV)/.installed
	$(OPS) heal

## dlq: list the dead-letter queue, with why each message failed
dlq: $(VENV)/.installed
	@$(OPS) dlq

## redrive: move the dead-letter queue back to the change queue; reports how many moved
redrive: $(VENV)/.installed
	@$(OPS) redrive --wait

## verify: compare the cache with Supabase and report drift (changes nothing; exit 1 on drift);
##   TABLE=<name> for one table
verify: $(VENV)/.installed
	@$(OPS) verify $(if $(TABLE),--table $(TABLE))

## status: queue depths, cached tables, and each table's last successful reconcile
status: $(VENV)/.installed
	@$(OPS) status

## logs: tail the deployed functions' logs (ENV=prod for the prod stack)
logs: $(SAM_VENV)/.installed
	$(SAM_ENV) $(SAM) logs $(SAM_ENV_FLAG) $(if $(STACK),--stack-name $(STACK))

## sync: SAM's watch mode against a dev stack (not for prod)
sync: $(SAM_VENV)/.installed
	$(SAM_ENV) $(SAM) sync $(SAM_ENV_FLAG) $(if $(STACK),--stack-name $(STACK))

## delete: delete the deployed stack (asks first)
delete: $(SAM_VENV)/.installed
	$(SAM_ENV) $(SAM) delete $(SAM_ENV_FLAG) $(if $(STACK),--stack-name $(STACK))

## lock: re-resolve the pinned dependency files from requirements/*.in (and the layer's list)
lock:
	rm -rf /tmp/swu-lock && $(PYTHON) -m venv /tmp/swu-lock && /tmp/swu-lock/bin/pip install -q -r requirements/dev.in && /tmp/swu-lock/bin/pip freeze > requirements/dev.lock
	rm -rf /tmp/swu-lock-checkov && $(PYTHON) -m venv /tmp/swu-lock-checkov && /tmp/swu-lock-checkov/bin/pip install -q -r requirements/checkov.in && /tmp/swu-lock-checkov/bin/pip freeze > requirements/checkov.lock
	/tmp/swu-lock/bin/python -m ops.layer_requirements
	rm -rf /tmp/swu-lock-sam && $(PY313) -m venv /tmp/swu-lock-sam && /tmp/swu-lock-sam/bin/pip install -q -r requirements/sam.in && /tmp/swu-lock-sam/bin/pip freeze > requirements/sam.lock

## clean: remove the virtualenvs, build output, caches and .local-data/ (demo logs, kept rows)
clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .mypy_cache .ruff_cache .local-data
