"""``import chainlab`` is light: the facade loads its layers on first use (PEP 562, chainlab/lazy.py).

Each check runs in a fresh interpreter (this process has imported everything already) and inspects
``sys.modules``: which modules an import pulls in is exact, where a timing would not be (the time itself
is measured by scripts/bench_import.py).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import chainlab

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("h5py", "numba", "skimage", "sklearn", "matplotlib", "scipy.stats", "typer", "dask")


def loaded_after(*steps):
    """[the HEAVY modules present after each step] of ``steps`` (code) run in order in one fresh interpreter."""
    lines = ["import json, sys", "seen = []"]
    for code in steps:
        lines += [code, f"seen.append([m for m in {HEAVY!r} if m in sys.modules])"]
    lines.append("print(json.dumps(seen))")
    out = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def stages():
    """Heavy modules after: import chainlab; loading a net and the digits; extracting and explaining a chain."""
    return loaded_after(
        "import chainlab",
        "net = chainlab.models.load('digits-cnn')\n"
        "x = chainlab.data.model_input(net, chainlab.data.load_digits().x_test[:1])",
        "chain = chainlab.extract(net, x, 'zplus')\nassert chain.explain().shape == (1, 1, 8, 8)")


def test_the_probe_sees_a_heavy_import():
    """Negative control: the probe reports a module the code did import, at the step that imported it."""
    assert loaded_after("import chainlab", "import h5py") == [[], ["h5py"]]


def test_import_chainlab_loads_no_heavy_dependency(stages):
    assert stages[0] == []


def test_loading_a_net_and_the_digits_needs_no_scene_generator_or_files_machinery(stages):
    """A shipped net, the shipped digits and the input format: no scikit-image/-learn (scene generator),
    h5py (archives), matplotlib (reports), typer (CLI), dask (clusters), numba or scipy.stats."""
    assert stages[1] == []


def test_extracting_a_chain_loads_numba_but_not_the_app_or_archive_dependencies(stages):
    assert stages[2] == ["numba"]


def test_every_exported_name_resolves_to_the_object_of_its_layer():
    """The lazy facade hands out the very objects the layers define (what the eager facade did)."""
    from chainlab import chain, extraction, linalg, nets, rules
    expected = {
        "Chain": chain.Chain, "DeepLiftChain": chain.DeepLiftChain, "RectifiedChain": chain.RectifiedChain,
        "extract": extraction.extract, "BlockOperator": linalg.BlockOperator, "DenseOperator": linalg.DenseOperator,
        "Operator": linalg.Operator, "SparseOperator": linalg.SparseOperator, "as_operator": linalg.as_operator,
        "data": nets.data, "models": nets.models, "zoo": nets.zoo, "Composite": rules.Composite, "Rule": rules.Rule,
        "patterns": rules.patterns,
    }
    for name, obj in expected.items():
        assert getattr(chainlab, name) is obj, name
    assert chainlab.models.load.__module__ == "chainlab.nets.models"
    assert chainlab.patterns.__name__ == "chainlab.rules.patterns"


def test_all_and_dir_are_complete_before_anything_is_loaded():
    """In a fresh interpreter: ``dir(chainlab)`` lists every exported name and every subpackage before any
    is loaded; a subpackage imports only the layers below it; ``from chainlab import *`` binds all of
    ``__all__``; an unknown name is an AttributeError."""
    subpackages = sorted({p.parent.name for p in (ROOT / "chainlab").glob("*/__init__.py")} | {"kernels"})
    code = f"""
import sys, chainlab
loaded = lambda: sorted({{m.split(".")[1] for m in sys.modules if m.startswith("chainlab.")}})
before = loaded()
names = dir(chainlab)
missing = sorted((set(chainlab.__all__) | set({subpackages!r})) - set(names))
import chainlab.linalg
with_linalg = loaded()
ns = {{}}
exec("from chainlab import *", ns)
unbound = sorted(set(chainlab.__all__) - set(ns))
try:
    chainlab.no_such_name
    unknown = "no error"
except AttributeError as e:
    unknown = str(e)
print(repr((before, missing, with_linalg, unbound, unknown)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    before, missing, with_linalg, unbound, unknown = eval(out.stdout.splitlines()[-1])
    assert before == ["errors", "lazy", "version"]
    assert missing == []
    assert with_linalg == ["errors", "kernels", "lazy", "linalg", "version"]
    assert unbound == []
    assert unknown == "module 'chainlab' has no attribute 'no_such_name'"
