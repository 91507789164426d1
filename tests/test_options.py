"""Every option has one validation: each bad option, passed to each method, gives one error type and message.

The error is :class:`chainlab.errors.OptionError` everywhere, with one of two messages:
``unknown option(s) '<name>' for rule '<rule>'; it takes …`` or ``option <name> of rule '<rule>' must …``.
"""
import math
import re

import pytest
from typer.testing import CliRunner

import chainlab
from chainlab.errors import OptionError
from chainlab.extraction import COMMON, METHODS, method_names
from chainlab.rules import COMPOSITES, RULES, composite_params

BOX = {"low": 0.0, "high": 1.0}
NEEDS_BOX = {"zbox", "lrp-cmp", "dtd"}

BAD_COMMON = {
    "bias": ["some", 1, None],
    "stabilizer": [-1.0, 0.0, "abc", math.inf, math.nan, True],
    "dtype": ["float16", 3],
    "avgpool": ["mean", None],
    "materialize": ["no", 1],
    "residual": ["half", 0.5],
}
BAD_OWN = {
    "epsilon": [-0.1, 0.0, "abc", math.inf, True],
    "alpha": [-1.0, "2", math.inf],
    "beta": [-1.0, "1"],
    "gamma": [-0.25, "x", math.nan],
    "low": ["zero"],
    "high": [math.inf],
    "q": [120, -1, "abc"],
    "reference": ["ones", 3],
    "sigma": [-1.0, "wide"],
    "pattern_type": ["quadratic", 1],
    "patterns": [123],
    "activation": ["tanh", 3],
}


def own_options(name):
    if name in METHODS:
        return set(METHODS[name].own)
    if name in COMPOSITES:
        return set(composite_params(name))
    return set(RULES[name].params())


def common_options(name):
    return set(METHODS[name].common) if name in METHODS else set(COMMON)


@pytest.fixture(scope="module")
def net_x():
    net = chainlab.models.load("digits-mlp")
    return net, chainlab.data.model_input(net, chainlab.data.load_digits().x_test[:1])


def base(name):
    return dict(BOX) if name in NEEDS_BOX else {}


@pytest.mark.parametrize("name", method_names())
def test_unknown_option(net_x, name):
    net, x = net_x
    with pytest.raises(OptionError, match=rf"^unknown option\(s\) 'frobnicate' for rule '{re.escape(name)}'; it takes "):
        chainlab.extract(net, x, name, frobnicate=1, **base(name))


@pytest.mark.parametrize("name", method_names())
def test_bad_common_options(net_x, name):
    net, x = net_x
    for opt, values in BAD_COMMON.items():
        for v in values:
            if opt in common_options(name):
                pattern = rf"^option {opt} of rule '{re.escape(name)}' must "
            else:                       # an option the method would ignore is refused, not recorded
                pattern = rf"^unknown option\(s\) '{opt}' for rule '{re.escape(name)}'"
            with pytest.raises(OptionError, match=pattern):
                chainlab.extract(net, x, name, **{opt: v}, **base(name))


@pytest.mark.parametrize("name", method_names())
def test_bad_own_options(net_x, name):
    net, x = net_x
    for opt, values in BAD_OWN.items():
        for v in values:
            kw = {**base(name), opt: v}
            if opt == "sigma" and "reference" in own_options(name):
                kw["reference"] = "blur"
            if opt not in own_options(name):
                pattern = rf"^unknown option\(s\) '{opt}' for rule '{re.escape(name)}'"
            elif opt in ("alpha", "beta") and isinstance(v, float) and v >= 0 and math.isfinite(v):
                pattern = rf"^options alpha, beta of rule '{name}' must satisfy alpha - beta = 1"
            elif name in COMPOSITES:        # the composite's rule names itself, and the composite is named too
                pattern = rf"^option {opt} of rule '[a-z-]+' must .*\(in composite '{name}'\)$"
            else:
                pattern = rf"^option {opt} of rule '{re.escape(name)}' must "
            with pytest.raises(OptionError, match=pattern):
                chainlab.extract(net, x, name, **kw)


def test_ignored_options_are_not_recorded(net_x):
    net, x = net_x
    ch = chainlab.extract(net, x, "deeplift-rescale", dtype="float32")
    assert ch.options == {"dtype": "float32", "reference": "zeros"}
    ch = chainlab.extract(net, x, "guided-bp")
    assert ch.options == {}
    ch = chainlab.extract(net, x, "zplus", stabilizer=1e-9)
    assert ch.options["stabilizer"] == 1e-9 and "epsilon" not in ch.options


def test_cli_options_reach_the_same_check(tmp_path):
    from chainlab.app.cli import app
    runner = CliRunner()
    for value, says in (("Infinity", "must be a finite number, got inf"),
                        ("true", "must be a number, got True (bool)"), ("abc", "must be a number, got 'abc' (str)")):
        res = runner.invoke(app, ["extract", "-m", "digits-mlp", "-r", "lrp-epsilon", "-O", f"epsilon={value}",
                                  "-o", str(tmp_path / "c.h5")])
        assert res.exit_code == 2
        assert res.output.strip().splitlines() == [f"chainlab: error: option epsilon of rule 'lrp-epsilon' {says}"]
        assert not (tmp_path / "c.h5").exists()
