# Quick start: `make test` and `make tutorial`. Both create (or reuse) a virtual environment in
# $(VENV) and install the package into it with the extras they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= test

.PHONY: test tutorial venv clean

$(VENV)/.installed-$(EXTRAS): setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $@

venv: $(VENV)/.installed-$(EXTRAS)

test: venv
	$(PY) -m pytest -q

tutorial: venv
	@echo "The tutorial pipeline is not built yet (issue 5); the package is installed in $(VENV)."

clean:
	rm -rf $(VENV) build *.egg-info docs/_build
