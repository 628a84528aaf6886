# Two commands: `make demo` and `make test`. Both create .venv and install agglo from pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.agglo-installed

.PHONY: demo test bytecode lint format bench bench-full boundaries clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# bytecode of the editable source, written even where PYTHONDONTWRITEBYTECODE is set (as on CI
# machines): otherwise every run compiles agglo's ~30k lines again (0.3-0.5 s per process)
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q src >/dev/null

demo: $(STAMP) bytecode
	$(BIN)/agglo run --out outputs --force

test: $(STAMP) bytecode
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests scripts benchmarks
	$(BIN)/ruff check --fix src tests scripts benchmarks

bench: $(STAMP)  # quick versions of every benchmark (minutes); bench-full for the numbers in the notes
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b --quick || exit 1; done

bench-full: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

boundaries: $(STAMP)
	$(BIN)/python scripts/build_boundaries.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache
