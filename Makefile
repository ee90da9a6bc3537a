# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
NETWORK ?= config/networks/guangrao.yaml
DATA_DIR ?= var/guangrao
DEMO_RECORDS ?= 2000
# Extra options for `federation serve`, e.g. make serve SERVE_ARGS="--http 0.0.0.0:8080 --workers 2"
SERVE_ARGS ?=
DEBIAN_PACKAGES := yaz idzebra-2.0 idzebra-2.0-examples
# Real records served beside the demo data (each once: fixtures/cnmarc also holds the same
# records in other serializations, and the LoC manifests are not MARC).
DEMO_FIXTURES := $(wildcard fixtures/marc21/*.mrc) fixtures/marc21/summerland.marcxml.xml \
                 fixtures/cnmarc/dp2_sru_sample_cnmarcxml.iso

.PHONY: serve test install debian-packages demo-catalogue check-config bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml | $(VENV)/bin/python
	$(PIP) install --upgrade --quiet pip
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The tests drive real peers and clients: yaz-client, zoomsh, yaz-ztest, zebrasrv.
debian-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != "0" ]; then \
	    echo "error: Debian packages missing:$$missing"; \
	    echo "       run as root, or: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: install debian-packages
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

check-config: install
	@for f in config/networks/*.yaml; do $(VENV)/bin/federation check-config $$f || exit 1; done

# Builds the demo catalogue (idempotent: unchanged input is not re-ingested) and serves it.
demo-catalogue: install
	$(VENV)/bin/federation demo-data --config $(NETWORK) --records $(DEMO_RECORDS) --seed 1 --out $(DATA_DIR)/demo-input
	$(VENV)/bin/federation ingest --config $(NETWORK) --data-dir $(DATA_DIR) --quiet \
	    $(DATA_DIR)/demo-input $(DEMO_FIXTURES)

serve: demo-catalogue
	$(VENV)/bin/federation serve --config $(NETWORK) --data-dir $(DATA_DIR) --demo-banner $(SERVE_ARGS)

bench: install debian-packages
	$(PY) -m benchmarks.run

clean:
	rm -rf var .pytest_cache
