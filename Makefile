# FreeTickets bench. `make test` and `make demo` work on a fresh clone with no network beyond
# the package index; everything else builds on them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED ?= ../shared

.PHONY: test test-fast demo venv cifar10-npz clean figures paper golden golden-check bench \
	bench-edst gpu-check chromium

# Exact versions from constraints.txt (pyproject.toml holds ranges): tests, CI and the golden
# reports all run on the same torch.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The suite in one process per core (pytest-xdist), a test file's tests in one process (their
# module fixtures train once), one thread each: torch's threads would fight over the cores.
PYTEST := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n auto --dist=loadfile

test: $(STAMP) chromium
	$(PYTEST)
	$(MAKE) golden-check

# The browser test of the paper page (tests/paper/test_browser.py) drives the distribution's
# Chromium (playwright cannot download its own offline): installed here when it is absent and
# we are root with apt-get; otherwise one line, and that test skips saying why.
CHROMIUM_NAMES := chromium chromium-browser google-chrome
chromium:
	@if [ -n "$$(for name in $(CHROMIUM_NAMES); do command -v $$name; done)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "chromium: installing the distribution's package for the browser test"; \
		mkdir -p build; { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium; } >build/chromium-install.log 2>&1 \
		|| echo "chromium: apt-get install chromium failed (build/chromium-install.log);" \
			"the browser test will skip"; \
	else echo "chromium: not found, and installing it needs root and apt-get; the browser" \
		"test will skip"; fi

# The suite to run every minute: no training, no process started (tests/conftest.py --fast).
test-fast: $(STAMP)
	$(PYTEST) --fast

demo: $(STAMP)
	$(PY) -m harness.demo --output_dir=reports/demo

# Every table of the catalogue (harness/tables/catalogue.py; CATALOGUE=my_tables.py adds yours) goes
# through one rule, `make tableN`: every row of the table (one run per seed in the run store,
# harness/store/runs.py: a finished run is reused, wherever it was asked for first, and an
# unfinished one resumed), then reports/tableN.{parquet,md} beside the paper's numbers.
SCALE ?= paper
SEEDS ?= 1
CATALOGUE ?=

# The data a table's rows read before they run: at cpu scale the decoded CIFAR-10 arrays
# (Table 2 is CIFAR-100, Table 3 ImageNet), at tiny scale Table 3's ImageNet stand-in.
table_data = $(if $(filter 3,$(1)),$(if $(filter tiny,$(SCALE)),data/tiny-imagenet),\
	$(if $(filter 2,$(1)),,$(if $(filter cpu,$(SCALE)),data/cifar10.npz)))

# The tiny scale's stand-in for ImageNet: real JPEGs in ImageNet's folder layout.
data/tiny-imagenet: | $(STAMP)
	$(PY) -m harness.data.tiny_imagenet --output_dir=$@
.SECONDEXPANSION:
table%: $(STAMP) $$(call table_data,$$*)
	$(PY) -m harness.tables --table=$* --scale=$(SCALE) --seeds=$(SEEDS) \
		$(if $(CATALOGUE),--catalogue=$(CATALOGUE))

figures: $(STAMP)
	$(PY) -m harness.figures --scale=$(SCALE)

# The whole paper on one static page, reports/paper/$(SCALE)/index.html: every table through
# `python -m harness.tables --table=N` (finished runs reused), every figure, what is missing
# and why (harness/paper/build.py). At smoke scale Table 3 stands in at its tiny scale.
# `make paper PROTOCOL=uniform`: every row under gin/protocol/uniform.gin, the page in
# reports/paper/$(SCALE)-uniform/, linked both ways with the printed protocol's page.
# `make paper SCALE=paper PLAN=1` prints the compute plan instead (harness/tables/compute_plan.py):
# every distinct run of the page, its status, FLOPs and GPU-hours; nothing runs.
ifdef PLAN
paper: $(STAMP)
	$(PY) -m harness.tables --plan --scale=$(SCALE) --seeds=$(SEEDS)
else
paper: $(STAMP) $(if $(filter cpu,$(SCALE)),data/cifar10.npz) \
		$(if $(filter smoke,$(SCALE)),data/tiny-imagenet)
	$(PY) -m harness.paper --scale=$(SCALE) --seeds=$(SEEDS) $(if $(CATALOGUE),--catalogue=$(CATALOGUE)) \
		$(if $(PROTOCOL),--protocol=$(PROTOCOL))
endif

# The golden smoke tables (Table 1; Table 6, training only its Snapshot and FGE rows: its other
# rows are Table 1's configurations, so the table shows Table 1's runs, and at smoke scale its
# CIFAR-100 rows are its CIFAR-10 ones; Table 4, whose rows are Table 1's runs: seconds on top):
# `make golden` rewrites
# reports/golden/ (commit it when a change is meant to move numbers, e.g. a new row);
# `make golden-check`, part of `make test`, rebuilds them from scratch and fails when any cell
# drifts past harness/tables/diff.py's tolerances.
# In float64 (golden.gin), so that CPUs of other vector widths agree far within the tolerances;
# one thread keeps it bit-exact on one machine besides.
GOLDEN_TABLES := 1 6 4
GOLDEN_ROWS_6 := --rows=snapshot_m12_c10,fge_m5_c10
GOLDEN_RUN = OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m harness.tables --table=$(1) $(GOLDEN_ROWS_$(1)) \
	--scale=smoke --seeds=1 --gin_file=reports/golden/golden.gin --runs_dir=build/golden/runs \
	--noprogress

golden: $(STAMP)
	rm -rf build/golden
	$(foreach table,$(GOLDEN_TABLES),$(call GOLDEN_RUN,$(table)) --output_dir=reports/golden &&) true

golden-check: $(STAMP)
	rm -rf build/golden && mkdir -p build/golden
	$(foreach table,$(GOLDEN_TABLES),$(call GOLDEN_RUN,$(table)) --output_dir=build/golden \
		> build/golden/log$(table) 2>&1 || (cat build/golden/log$(table); exit 1);)
	$(foreach table,$(GOLDEN_TABLES),$(PY) -m harness.diff reports/golden/table$(table).parquet \
		build/golden/table$(table).parquet &&) true

# Speed, as ratios measured side by side in one process (harness/bench/suite.py): harness vs bare
# PyTorch loops, sparse vs dense steps, peak memory on corrupted sets, sparse inference.
# Not part of `make test`; over an hour on 2 busy CPU cores with the sparse kernels (`--quick`:
# about 20 minutes). Writes build/bench/bench.json, keeping the keys of `make bench-edst`.
BENCH_THREADS ?= 1
bench: $(STAMP)
	OMP_NUM_THREADS=$(BENCH_THREADS) MKL_NUM_THREADS=$(BENCH_THREADS) $(PY) -m harness.bench \
		--output_dir=build/bench

# EDST's training wall-clock against a single dense network's: the cpu scale's EDST (M = 3,
# S = 0.8, SparsitySpec.kernels = 'auto') and dense runs trained one after the other through
# harness.run into build/bench/edst/ (70 epochs of 10,000 CIFAR-10 images between them: about
# an hour on 2 CPU cores), then edst_cpu_wallclock_ratio merged into build/bench/bench.json
# (harness/bench/edst_wallclock.py). Finished runs there are reused: delete them to measure again.
bench-edst: $(STAMP) data/cifar10.npz
	$(PY) -m harness.bench.edst_wallclock --output_dir=build/bench --runs_dir=build/bench/edst

# What one GPU does with the harness's training steps, in at most 5 minutes: images/s and
# fraction of peak per model and precision, sparse and tiled steps, bf16 against fp32, DDP
# masks (harness/bench/gpu_check.py). Writes build/gpu_check/gpu_check.json, which the compute plan
# and `make bench` read. Without CUDA it runs on the CPU at reduced sizes.
gpu-check: $(STAMP)
	$(PY) -m harness.gpu_check --output_dir=build/gpu_check

# The shared JPEG copy of CIFAR-10 decoded to the arrays the `npz` dataset reads (cpu scale).
data/cifar10.npz: | $(STAMP)
	mkdir -p data
	$(PY) $(SHARED)/data/make_cifar10_npz.py $@

cifar10-npz: data/cifar10.npz

clean:
	rm -rf reports/demo runs build .pytest_cache
