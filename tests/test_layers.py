"""The package's layers: imports point one way (down), no circles, no chainlab import hidden in a function.

The order is the one the README's Layout section draws (bottom first).  Modules of one layer may
import each other (without circles); the root ``chainlab/__init__.py`` is the facade above all.

The one documented lazy import: a package ``__init__`` may export names that load on first use through
``chainlab.lazy.attach(__name__, submodules=[...], names={...})`` (PEP 562).  Its tables must be literal,
and each entry counts here as a module-level import of that package (layer order and circles apply).  No
other import with a computed name (``importlib.import_module``, ``__import__``) is allowed in chainlab.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [                                   # bottom → top
    ("kernels",),
    ("errors", "options", "files", "memory", "version", "lazy"),
    ("linalg",),
    ("chain",),
    ("trace",),
    ("nets",),
    ("rules",),
    ("extraction",),
    ("archive",),
    ("measures",),
    ("studies",),
    ("papers",),
    ("app",),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def modules():
    """{dotted module name: path} of every chainlab source file (kernels/ is chainlab.kernels)."""
    out = {}
    for base, prefix in ((ROOT / "chainlab", "chainlab"), (ROOT / "kernels", "chainlab.kernels")):
        for p in base.rglob("*.py"):
            parts = list(p.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix] + parts)] = p
    return out


def resolve(pkg, module, level):
    """The absolute name of ``from <level dots><module> import …`` written in package ``pkg``."""
    if not level:
        return module or ""
    base = pkg.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def lazy_tables(call):
    """(submodules, {module: names}) of a ``lazy.attach(__name__, submodules=..., names=...)`` call, or None
    when the call is not ``attach``.  Non-literal tables raise ValueError."""
    f = call.func
    if not ((isinstance(f, ast.Name) and f.id == "attach") or (isinstance(f, ast.Attribute) and f.attr == "attach")):
        return None
    kw = {k.arg: k.value for k in call.keywords}
    submodules = ast.literal_eval(kw["submodules"]) if "submodules" in kw else ()
    names = ast.literal_eval(kw["names"]) if "names" in kw else {}
    if len(call.args) != 1 or not (isinstance(call.args[0], ast.Name) and call.args[0].id == "__name__"):
        raise ValueError("attach must be called as attach(__name__, submodules=[...], names={...})")
    return submodules, names


def imports(name, path):
    """[(imported chainlab module, line, inside a function)] of one module (lazy tables included)."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, f) for a in child.names if a.name.split(".")[0] == "chainlab")
            elif isinstance(child, ast.ImportFrom):
                mod = resolve(pkg, child.module, child.level)
                if mod.split(".")[0] == "chainlab":
                    if child.module is None or mod in ("chainlab",):   # from . import x  /  from .. import x
                        found.extend((f"{mod}.{a.name}", child.lineno, f) for a in child.names)
                    else:
                        found.append((mod, child.lineno, f))
            elif isinstance(child, ast.Call) and (tables := lazy_tables(child)) is not None:
                submodules, names = tables
                found.extend((f"{pkg}.{s}", child.lineno, f) for s in submodules)
                for rel in names:
                    level = len(rel) - len(rel.lstrip("."))
                    found.append((resolve(pkg, rel.lstrip(".") or None, level), child.lineno, f))
            visit(child, f)

    visit(tree, False)
    return found


def computed_imports(path):
    """Lines of imports whose module name is computed at run time (``import_module``, ``__import__``)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if fname in ("import_module", "__import__"):
                lines.append(node.lineno)
    return lines


def layer_of(mod):
    parts = mod.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None       # None: the root facade


MODS = modules()


def test_every_module_belongs_to_a_layer():
    unplaced = sorted(m for m in MODS if m != "chainlab" and layer_of(m) is None)
    assert not unplaced, f"modules outside the documented layers: {unplaced}"


@pytest.mark.parametrize("name", sorted(MODS))
def test_imports_point_down_and_are_at_module_level(name):
    if name == "chainlab":
        return                                                   # the facade imports every layer
    own = layer_of(name)
    for mod, line, in_func in imports(name, MODS[name]):
        target = layer_of(mod)
        assert target is not None, f"{name}:{line} imports the package root ({mod}): import the layer instead"
        assert target <= own, (f"{name}:{line} imports {mod}, layer {LAYERS[target]} above its own "
                               f"{LAYERS[own]}")
        assert not in_func, f"{name}:{line} imports {mod} inside a function (dodging a circle?)"


@pytest.mark.parametrize("name", sorted(MODS))
def test_no_import_with_a_computed_name_but_the_lazy_one(name):
    if name == "chainlab.lazy":
        return                                                   # the documented mechanism (PEP 562)
    lines = computed_imports(MODS[name])
    assert not lines, (f"{name}: import with a computed name at line(s) {lines}; export lazily with "
                       "chainlab.lazy.attach (literal tables) or import at module level")


def test_lazy_exports_are_modules_of_the_package_or_below():
    """Each lazily exported name exists where its table says (nothing is hidden behind a typo)."""
    import importlib
    for name, path in MODS.items():
        if path.name != "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and (tables := lazy_tables(node)) is not None:
                submodules, names = tables
                for s in submodules:
                    assert f"{name}.{s}" in MODS, f"{name} lazily exports {s}, which is not a module of it"
                for rel, attrs in names.items():
                    level = len(rel) - len(rel.lstrip("."))
                    mod = importlib.import_module(resolve(name, rel.lstrip(".") or None, level))
                    missing = [a for a in attrs if not hasattr(mod, a)]
                    assert not missing, f"{name} lazily exports {missing} from {mod.__name__}, which has none of that name"


def test_no_import_circles():
    graph = {}
    for name, path in MODS.items():
        deps = set()
        for mod, _, _ in imports(name, path):
            while mod and mod not in MODS:                       # `from pkg import name` names a symbol
                mod = mod.rsplit(".", 1)[0] if "." in mod else ""
            if mod and mod != name:
                deps.add(mod)
        graph[name] = deps
    # a package's __init__ re-exports its modules: edges from a module to its own package's face are the
    # face importing back, which Python resolves through sys.modules — still a circle, so they count
    state, stack, cycles = {}, [], []

    def dfs(n):
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, ()):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif state.get(m) is None:
                dfs(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if state.get(n) is None:
            dfs(n)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])


def test_the_checker_sees_upward_hidden_and_relative_imports(tmp_path):
    """Negative control: a module of linalg that imports measures, once at the top and once in a function."""
    p = tmp_path / "conv.py"
    p.write_text("from ..measures import svd\nimport chainlab.app.cli\n\ndef f():\n    from . import operators\n")
    got = imports("chainlab.linalg.conv", p)
    assert got == [("chainlab.measures", 1, False), ("chainlab.app.cli", 2, False), ("chainlab.linalg.operators", 5, True)]
    assert [layer_of(m) > layer_of("chainlab.linalg.conv") for m, _, _ in got] == [True, True, False]


def test_the_checker_reads_lazy_tables_and_sees_computed_imports(tmp_path):
    """Negative controls: a lazy table of linalg naming a layer above counts as an upward import; a
    non-literal table is refused; import_module / __import__ anywhere are found."""
    p = tmp_path / "__init__.py"
    p.write_text("from .. import lazy\n__getattr__, __dir__, _ = lazy.attach(\n    __name__, submodules=['spmat'],\n"
                 "    names={'..measures': ['svd'], '.conv': ['conv_matrix']})\n")
    got = imports("chainlab.linalg", p)
    assert got == [("chainlab.lazy", 1, False), ("chainlab.linalg.spmat", 2, False), ("chainlab.measures", 2, False),
                   ("chainlab.linalg.conv", 2, False)]
    assert layer_of("chainlab.measures") > layer_of("chainlab.linalg")
    p.write_text("from .. import lazy\nMODS = ['spmat']\nlazy.attach(__name__, submodules=MODS)\n")
    with pytest.raises(ValueError):
        imports("chainlab.linalg", p)
    p.write_text("import importlib\ndef f():\n    return importlib.import_module('chainlab.app')\n"
                 "g = __import__('chainlab.measures')\n")
    assert sorted(computed_imports(p)) == [3, 4]


def test_setup_cfg_lists_every_package():
    """setup.cfg names the packages explicitly (kernels/ is mapped to chainlab.kernels): none may be missing."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {name for name, p in MODS.items() if p.name == "__init__.py"}
    assert found <= listed, f"packages missing from setup.cfg: {sorted(found - listed)}"
