# FreeTickets bench. `make test` and `make demo` work on a fresh clone with no network beyond
# the package index; everything else builds on them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED ?= ../shared

.PHONY: test demo venv cifar10-npz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) -m harness.demo --output_dir=reports/demo

# The shared JPEG copy of CIFAR-10 decoded to the arrays the `npz` dataset reads (cpu scale).
data/cifar10.npz: | $(STAMP)
	mkdir -p data
	$(PY) $(SHARED)/data/make_cifar10_npz.py $@

cifar10-npz: data/cifar10.npz

clean:
	rm -rf reports/demo runs .pytest_cache
