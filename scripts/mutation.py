"""Mutation testing of the decision code: every small change to a verdict's code must make a test fail.

For each target module, every mutation site of the operators below is changed one at a time (one mutant =
one change), the mutated file is written into a scratch copy of the package, and the given tests run
against that copy in a fresh process.  A mutant is *killed* when a test fails (or the run errors or times
out), *survived* otherwise.  The score and every survivor (file:line, the change) are printed; survivors are
either a missing test or an equivalent mutant (say which in the README).

Operators: comparisons (< ↔ ≤, > ↔ ≥, == ↔ !=, and the flipped direction), boolean and ↔ or, `not x` → x,
arithmetic + ↔ −, * ↔ /, unary minus dropped, numeric constants (n → n + 1; a float c → c·1.5 and 0 → 1),
True ↔ False, the outcome names R/N/U/X of chainlab.papers.verdict swapped, min ↔ max, any ↔ all, and
`return <expr>` → `return None`.  Docstrings, ``__all__``, f-string texts, decorators and dataclass field
defaults are not mutated.

A survivor that cannot change any result is argued where it lives: a ``# equivalent mutant: <reason>`` comment on
its line is copied into the summary beside it (it still counts as a survivor in the score).  ``--only`` with an
existing ``--output`` file replaces those targets' results and keeps the others'.

Run (takes minutes; not part of CI):
    python scripts/mutation.py                       # the default targets and tests below
    python scripts/mutation.py --only chainlab/papers/verdict.py --tests tests/test_verdicts.py
    python scripts/mutation.py --smoke               # 8 mutants of verdict.py: checks the machinery works
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# decision code and the statistics it calls → the tests that must kill its mutants
TARGETS = {
    "chainlab/papers/verdict.py": ["tests/test_verdicts.py"],
    "chainlab/papers/stats.py": ["tests/test_verdicts.py"],
}
for p in sorted((ROOT / "chainlab" / "papers").glob("*/decide.py")):
    TARGETS[str(p.relative_to(ROOT))] = sorted(str(t.relative_to(ROOT)) for t in (ROOT / "tests").glob(
        f"test_decide_{p.parent.name}*.py")) or ["tests/test_verdicts.py"]

CMP_SWAPS = {ast.Lt: [ast.LtE, ast.Gt], ast.LtE: [ast.Lt, ast.GtE], ast.Gt: [ast.GtE, ast.Lt],
             ast.GtE: [ast.Gt, ast.LtE], ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.Is: [ast.IsNot],
             ast.IsNot: [ast.Is], ast.In: [ast.NotIn], ast.NotIn: [ast.In]}
BIN_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult,
             ast.FloorDiv: ast.Mult}
NAME_SWAPS = {"R": "N", "N": "R", "U": "R", "X": "R", "min": "max", "max": "min", "any": "all", "all": "any"}
SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
          ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
          ast.Div: "/", ast.Pow: "**", ast.FloorDiv: "//"}


def _skipped(tree) -> set:
    """ids of nodes never mutated: docstrings, __all__, f-strings and everything inside them."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            skip.update(id(n) for n in ast.walk(body[0]))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):    # decorators (frozen=True …) configure, not decide
            for dec in node.decorator_list:
                skip.update(id(n) for n in ast.walk(dec))
        if isinstance(node, ast.ClassDef):          # dataclass field defaults are data, not decisions
            for st in node.body:
                if isinstance(st, ast.AnnAssign) and st.value is not None:
                    skip.update(id(n) for n in ast.walk(st.value))
    return skip


def sites(source: str) -> list[tuple]:
    """[(index, line, description)] of every mutation of ``source`` (the index selects it in :func:`mutate`)."""
    out = []
    _walk(ast.parse(source), out, None)
    return out


def mutate(source: str, index: int) -> str:
    """``source`` with mutation number ``index`` applied."""
    tree = ast.parse(source)
    _walk(tree, [], index)
    return ast.unparse(ast.fix_missing_locations(tree))


def _walk(tree, out, apply):
    skip = _skipped(tree)
    count = [0]

    def site(node, desc, do):
        if apply is None:
            out.append((count[0], getattr(node, "lineno", 0), desc))
        elif count[0] == apply:
            do()
        count[0] += 1

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                for new in CMP_SWAPS.get(type(op), ()):
                    site(node, f"{SYMBOL[type(op)]} → {SYMBOL[new]}",
                         lambda i=i, new=new: node.ops.__setitem__(i, new()))
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            site(node, f"{'and → or' if new is ast.Or else 'or → and'}", lambda new=new: setattr(node, "op", new()))
        elif isinstance(node, ast.BinOp) and type(node.op) in BIN_SWAPS:
            new = BIN_SWAPS[type(node.op)]
            site(node, f"{SYMBOL[type(node.op)]} → {SYMBOL[new]}", lambda new=new: setattr(node, "op", new()))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            if isinstance(node.op, ast.Not):
                site(node, "drop 'not'", lambda node=node: _drop_not(node))
            else:
                site(node, "drop unary −", lambda node=node: setattr(node, "op", ast.UAdd()))
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            v = node.value
            new = (not v) if isinstance(v, bool) else (v + 1 if isinstance(v, int) else (1.0 if v == 0 else v * 1.5))
            site(node, f"{v!r} → {new!r}", lambda new=new: setattr(node, "value", new))
        elif isinstance(node, ast.Name) and node.id in NAME_SWAPS and isinstance(node.ctx, ast.Load):
            new = NAME_SWAPS[node.id]
            site(node, f"{node.id} → {new}", lambda new=new: setattr(node, "id", new))
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            site(node, "return … → return None", lambda: setattr(node, "value", ast.Constant(None)))


def _drop_not(node):
    """`not x` → `x` (the UnaryOp is kept as a double negation: not not x)."""
    node.operand = ast.UnaryOp(ast.Not(), node.operand)


def scratch_copy(tmp: Path) -> Path:
    """The package as it would be installed (kernels/ → chainlab/kernels), the tests, setup.cfg: mutants run
    there with PYTHONPATH pointing at it, so the working tree is never touched."""
    shutil.copytree(ROOT / "chainlab", tmp / "chainlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "kernels", tmp / "chainlab" / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", tmp / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    if (ROOT / "data").exists():
        os.symlink(ROOT / "data", tmp / "data")
    shutil.copy(ROOT / "setup.cfg", tmp / "setup.cfg")
    return tmp


def _outcome(rc: int) -> str:
    """A pytest exit code as a mutant's fate: 0 survived, 1 killed by a failing test, else killed by an error."""
    return "survived" if rc == 0 else ("killed" if rc == 1 else f"killed (exit {rc})")


def run_tests(tmp: Path, tests, timeout: float) -> str:
    env = dict(os.environ, PYTHONPATH=str(tmp), PYTHONDONTWRITEBYTECODE="1", CHAINLAB_DATA=str(ROOT / "data"))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    try:
        p = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed (timeout)"
    return _outcome(p.returncode)


PRELOAD = ("numpy", "scipy", "scipy.stats", "scipy.sparse", "scipy.sparse.linalg", "torch", "torch.nn", "h5py",
           "pytest", "typer", "click", "tqdm")


def preload() -> None:
    """Import the heavy third-party packages once in this process (never chainlab, never a torch op: no threads
    are started), so that each forked mutant run starts with them loaded."""
    import importlib
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def run_tests_forked(tmp: Path, tests, timeout: float) -> str:
    """:func:`run_tests` in a forked child of this (preloaded) process: the child imports chainlab from the
    scratch copy, runs pytest in-process and exits with its code — 99 if chainlab came from anywhere else."""
    pid = os.fork()
    if pid == 0:                                    # the child
        code = 98
        try:
            os.chdir(tmp)
            sys.path.insert(0, str(tmp))
            os.environ.update(PYTHONPATH=str(tmp), PYTHONDONTWRITEBYTECODE="1", CHAINLAB_DATA=str(ROOT / "data"))
            sys.dont_write_bytecode = True
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            import pytest
            code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]))
            mod = sys.modules.get("chainlab")
            if mod is None or not str(getattr(mod, "__file__", "")).startswith(str(tmp)):
                code = 99
        finally:
            os._exit(code)
    deadline = time.time() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "killed (timeout)"
        time.sleep(0.05)
    rc = os.waitstatus_to_exitcode(status)
    if rc == 99:
        raise SystemExit(f"mutation: the tests imported chainlab from outside the scratch copy {tmp}; stopping")
    return _outcome(rc)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="target files (default: every decision module)")
    ap.add_argument("--tests", nargs="*", help="tests to run against every mutant (default: the target's own)")
    ap.add_argument("--smoke", action="store_true", help="8 mutants of verdict.py only")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--output", type=Path, help="write the summary as JSON here")
    ap.add_argument("--no-fork", action="store_true",
                    help="a fresh interpreter per mutant (slower: every run imports torch again)")
    a = ap.parse_args(argv)
    run = run_tests if a.no_fork else run_tests_forked
    if not a.no_fork:
        preload()
    targets = {t: TARGETS.get(t, ["tests/test_verdicts.py"]) for t in (a.only or TARGETS)}
    if a.smoke:
        targets = {"chainlab/papers/verdict.py": ["tests/test_verdicts.py"]}
    with tempfile.TemporaryDirectory(prefix="chainlab-mutation-") as d:
        tmp = scratch_copy(Path(d))
        check = subprocess.run([sys.executable, "-c", "import chainlab, sys; sys.stdout.write(chainlab.__file__)"],
                               cwd=tmp, env=dict(os.environ, PYTHONPATH=str(tmp)), capture_output=True, text=True)
        if not check.stdout.startswith(str(tmp)):
            print(f"mutation: the scratch copy is not what imports ({check.stdout or check.stderr}); stopping")
            return 2
        summary, killed, total, t0 = {}, 0, 0, time.time()
        for target, tests in targets.items():
            src = (ROOT / target).read_text()
            muts = sites(src)
            if a.smoke:
                muts = muts[:: max(1, len(muts) // 8)][:8]
            tests = a.tests or tests
            print(f"{target}: {len(muts)} mutants, tests {' '.join(tests)}", flush=True)
            base = run(tmp, tests, a.timeout)
            if base != "survived":
                print(f"  the tests fail without any mutation ({base}): fix them first")
                return 2
            surv = []
            for idx, line, desc in muts:
                (tmp / target).write_text(mutate(src, idx))
                res = run(tmp, tests, a.timeout)
                total += 1
                if res == "survived":
                    why = _equivalent(src, line)
                    surv.append({"line": line, "change": desc, **({"equivalent": why} if why else {})})
                    print(f"  SURVIVED {target}:{line}: {desc}", flush=True)
                else:
                    killed += 1
            (tmp / target).write_text(src)
            summary[target] = {"mutants": len(muts), "killed": len(muts) - len(surv), "survivors": surv}
            print(f"  {len(muts) - len(surv)}/{len(muts)} killed", flush=True)
    if a.output and a.output.exists() and a.only:      # a rerun of some targets: keep the others' results
        old = json.loads(a.output.read_text())["targets"]
        summary = {**{t: v for t, v in old.items() if t not in summary}, **summary}
    killed = sum(t["killed"] for t in summary.values())
    total = sum(t["mutants"] for t in summary.values())
    score = killed / total if total else float("nan")
    print(f"mutation score: {killed}/{total} killed = {100 * score:.1f} % ({time.time() - t0:.0f} s)")
    if a.output:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(json.dumps({"score": score, "killed": killed, "total": total, "targets": summary},
                                       indent=1, sort_keys=True) + "\n")
    return 0


def _equivalent(src: str, line: int) -> str:
    """The reason given on a source line marked ``# equivalent mutant: <reason>`` (a survivor that cannot change
    any result, argued in place), else ''.  Marked survivors still count as survivors in the score."""
    text = src.splitlines()[line - 1]
    return text.split("# equivalent mutant:", 1)[1].strip() if "# equivalent mutant:" in text else ""


if __name__ == "__main__":
    sys.exit(main())
