"""The package's layers: imports point one way (down), no circles, no chainlab import hidden in a function.

The order is the one the README's Layout section draws (bottom first).  Modules of one layer may
import each other (without circles); the root ``chainlab/__init__.py`` is the facade above all.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = [                                   # bottom → top
    ("kernels",),
    ("errors", "options", "files", "version"),
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


def imports(name, path):
    """[(imported chainlab module, line, inside a function)] of one module."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, f) for a in child.names if a.name.split(".")[0] == "chainlab")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                if mod.split(".")[0] == "chainlab":
                    if child.module is None or mod in ("chainlab",):   # from . import x  /  from .. import x
                        found.extend((f"{mod}.{a.name}", child.lineno, f) for a in child.names)
                    else:
                        found.append((mod, child.lineno, f))
            visit(child, f)

    visit(tree, False)
    return found


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


def test_setup_cfg_lists_every_package():
    """setup.cfg names the packages explicitly (kernels/ is mapped to chainlab.kernels): none may be missing."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {name for name, p in MODS.items() if p.name == "__init__.py"}
    assert found <= listed, f"packages missing from setup.cfg: {sorted(found - listed)}"
