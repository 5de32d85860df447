# `make setup` prepares a fresh machine (a .venv with CPU torch and netdef installed);
# `make test` runs the whole test suite (it runs setup first when needed);
# `make test-deps` installs the programs the drawing and browser tests use (Graphviz,
# Chromium; Debian packages, as root): the tests themselves install nothing and skip,
# saying why, where these are missing;
# `make acceptance` trains Caffe's LeNet on scikit-learn's digits with `netdef train`
# (examples/digits), through ImageData and through an LMDB: at least 98% test accuracy each;
# then the photo example (examples/cat_coffee_neither.py: scikit-image's bundled photos,
# fine-tuned, its grid of predictions drawn into build/).
PY ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup test test-deps bench acceptance grammar
setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

test: setup
	$(BIN)/python -m pytest -q tests

test-deps:
	@command -v dot >/dev/null && command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q graphviz chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1; apt-get install -y -q graphviz chromium >/dev/null 2>&1; } || \
	    echo "test-deps: could not install graphviz/chromium; their tests will skip"; \
	  else echo "test-deps: not root or no apt-get; drawing/browser tests will skip"; fi; }

bench: setup
	$(BIN)/python benchmarks/run_all.py

$(VENV)/.examples: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[examples]"
	touch $@

acceptance: $(VENV)/.examples
	$(BIN)/python examples/digits/acceptance.py
	$(BIN)/python examples/cat_coffee_neither.py --grid build/cat_coffee_neither.png

# The netdef language's LALR tables (grammar/netdef_lalr.py), after a change to grammar/netdef.lark.
grammar: setup
	$(BIN)/python -c "from compiler.frontends.dsl.syntax import write_tables; write_tables()"
