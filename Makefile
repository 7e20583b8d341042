# The two set-up commands are `make run` and `make test`; everything else is a helper.
SHELL := /bin/bash
# The project runs on Python 3.11 (pyproject.toml): python3.11 when it is on PATH.
PYTHON ?= $(shell command -v python3.11 || echo python3)
# Where `make run` serves: `make run PORT=8080 HOST=0.0.0.0`.
HOST ?= 127.0.0.1
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test install lint typecheck bench soak clean postgres chains browser proxy

$(STAMP): pyproject.toml
	test -x $(BIN)/python || { $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
		|| { echo "Python 3.11 is needed: install it, or make PYTHON=/path/to/python3.11"; exit 1; }; \
		$(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip==25.3
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Local chains for `make run` and the tests: anvil and bcoin from npm (package.json).
NODE_STAMP := node_modules/.installed-stamp
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

chains: $(NODE_STAMP)

run: install chains
	$(BIN)/agent-server db upgrade
	$(BIN)/agent-server demo-data --if-empty --specialists 1000
	AGENT_SERVER_SEND_WITHDRAWALS=$${AGENT_SERVER_SEND_WITHDRAWALS:-true} \
		$(BIN)/agent-server serve --host $(HOST) --port $(PORT)

postgres:
	bash scripts/ensure-postgres.sh

# The dashboard's browser tests drive Debian's chromium; installed only when missing.
browser:
	test -x /usr/bin/chromium || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$S apt-get update && $$S apt-get install -y --no-install-recommends chromium; }

# The reverse proxy of compose.yaml, run as a plain process by tests/test_deployment.py:
# Debian's nginx; installed only when missing.
proxy:
	test -x /usr/sbin/nginx || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$S apt-get update && $$S apt-get install -y --no-install-recommends nginx; }

# pytest runs on two workers, one test file at a time each: most tests wait on servers and
# chains they start, so two workers share the machine's two cores without starving either.
# The last step runs the billing, ledger and store tests again with the store's shortcuts off:
# the ordinary way through the ORM session (kernel/store/shortcuts.py) gives the same results.
test: install postgres chains browser proxy
	$(BIN)/ruff check agent_server billing wallets tests bench
	$(BIN)/ruff format --check agent_server billing wallets tests bench
	$(BIN)/mypy agent_server billing wallets
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --dist loadfile
	AGENT_SERVER_DATABASE_SHORTCUTS=off $(BIN)/pytest -q tests/test_billing_*.py \
		tests/test_store_direct.py tests/test_store_shortcuts.py tests/test_accounts_gate.py

lint: install
	$(BIN)/ruff check agent_server billing wallets tests bench
	$(BIN)/ruff format --check agent_server billing wallets tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy agent_server billing wallets

bench: install postgres
	$(BIN)/python -m bench

# Two servers on one PostgreSQL, 50 agents, 10,000 tool calls with disconnects and a SIGKILL,
# then the audit (tests/soak.py); the figures go to artifacts/soak.json. A reduced soak runs
# inside `make test` (tests/test_soak.py).
soak: install postgres
	mkdir -p artifacts
	$(BIN)/python tests/soak.py --agents 50 --calls 10000 --json artifacts/soak.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache artifacts
