"""hlmm.model: the spec is made once from the options and holds every rule of their combinations."""

import pytest

from hlmm.io import InputError
from hlmm.model import ModelSpec
from hlmm.pipeline import ScanOptions
from hlmm.scan import ScanSettings


def test_from_options__copies_every_option_once():
    options = ScanOptions(settings=ScanSettings(min_maf=0.1, max_missing=2.0, engine="reference", test="score",
                                                refit=4.0, robust=True, hard_calls=True),
                          fit_covariates=True, h2_init=0.2, no_h2_estimate=True)
    spec = ModelSpec.from_options(options, random_effects=False)
    assert (spec.min_maf, spec.max_missing, spec.engine, spec.test, spec.refit, spec.robust, spec.hard_calls,
            spec.fit_covariates, spec.h2_init, spec.no_h2_estimate) == (0.1, 2.0, "reference", "score", 4.0, True,
                                                                        True, True, 0.2, True)
    assert not spec.default_mode and spec.kind == "HLM" and spec.se == "robust"
    assert spec.wald().test == "wald" and spec.wald().refit is None and spec.wald().robust
    assert spec.describe()["refit"] == 4.0


@pytest.mark.parametrize("kw,message", [
    ({"engine": "quick"}, "unknown engine"),
    ({"test": "lrt"}, "unknown test"),
    ({"min_maf": 0.5}, "fraction in [0, 0.5)"),
    ({"max_missing": 0.0}, "percentage in (0, 100]"),
    ({"h2_init": -0.1}, "--h2_init must be finite"),
    ({"h2_init": float("nan")}, "--h2_init must be finite"),
    ({"refit": 3.0}, "--refit refits score-test rows"),
    ({"random_effects": True, "robust": True}, "--test score"),
    ({"random_effects": True, "robust": True, "test": "score", "refit": 3.0}, "without --refit"),
])
def test_invalid_combinations__one_line_input_errors(kw, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ModelSpec(**kw)


def test_valid_combinations__accepted():
    ModelSpec(random_effects=True, robust=True, test="score")
    ModelSpec(robust=True, test="score", refit=5.0)
    ModelSpec(random_effects=True, fit_covariates=True, engine="reference")


def test_frozen():
    with pytest.raises(AttributeError):
        ModelSpec().test = "score"
