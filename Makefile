# Quick start: `make tutorial` and `make test`. Both create (or reuse) a virtual environment in
# $(VENV) and install the package into it with the extras they need.
PYTHON ?= python3
VENV ?= .venv
V := $(abspath $(VENV))
PY := $(V)/bin/python
EXTRAS := test,plot
# tutorial size: `make tutorial N=20000 SNPS=200` shrinks it
N ?= 100000
SNPS ?= 500

.PHONY: test tutorial venv docs clean

$(V)/.installed: setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(V)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $@

venv: $(V)/.installed

test: venv
	$(V)/bin/ruff check .
	$(PY) -m pytest -q
	$(PY) -m sphinx -W -q -b html docs docs/_build/html

docs: venv
	$(PY) -m sphinx -W -b html docs docs/_build/html

tutorial: venv
	cd examples && $(PY) simulate_genotypes.py --n $(N) --snps $(SNPS)
	cd examples && $(PY) phenotype_simulation.py
	cd examples && $(PY) ../bin/hlmm_chr.py test.bed 0 $(SNPS) test_phenotype.fam test
	cd examples && $(PY) ../bin/hlmm_chr.py test.bed 0 $(SNPS) test_phenotype.fam test_random --random_gts random.bed
	cd examples && $(PY) ../bin/hlmm_dispersion.py test.models.gz --plot --report test_0
	cd examples && $(PY) ../bin/hlmm_dispersion.py test_random.models.gz --plot --report test_0

clean:
	rm -rf $(VENV) build *.egg-info docs/_build
