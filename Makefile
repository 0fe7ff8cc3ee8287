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

$(V)/.installed: setup.py pyproject.toml hlmm/engines/_classsums.c
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
	# related samples: families, with and without their (true) LOCO predictions
	cd examples && $(PY) ../benchmarks/simulate_families.py --families 500 --sibs 4 --chromosomes 10 \
		--snps-per-chr 200 --h2 0.6 --test-snps 300 --seed 1 --out families
	cd examples && $(PY) ../bin/hlmm_chr.py families/test.bed 0 300 families/pheno.txt families/nopred
	cd examples && $(PY) ../bin/hlmm_chr.py families/test.bed 0 300 families/pheno.txt families/pred \
		--pred families/true_pred.list
	# two stages: a variance scan, then G×E tests of its picks
	cd examples && $(PY) gxe_simulation.py
	cd examples && $(PY) ../bin/hlmm_chr.py test.bed 0 $(SNPS) gxe_phenotype.txt stage1
	cd examples && $(PY) pick_variants.py stage1.models.gz var_pval_robust --top 5 > picked.txt
	cd examples && $(PY) ../bin/hlmm_chr.py test.bed 0 $(SNPS) gxe_phenotype.txt stage2 --extract picked.txt \
		--mean_covar exposure.txt --interaction E

clean:
	rm -rf $(VENV) build *.egg-info docs/_build
