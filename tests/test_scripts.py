"""Scripts that cannot rot: every scripts/bench_*.py and verify_*.py runs in its ``--smoke`` mode and prints its
tables, and scripts use chainlab's public names only.

Each script runs once, as a subprocess (two at a time), with ``--smoke`` (tiny sizes) and ``--output`` (bench
scripts: a copy of what they print; verify scripts: the folder of the verdict file).  The checks read the
printed tables: the rows each script must print, its ratio columns as finite positive numbers, and where a
script compares two ways of computing one thing (chainlab vs float64 autograd, Lanczos vs ARPACK, batched vs
per-map EF, float32 vs float64 passes) that they agree.  No timing is asserted: smoke numbers mean nothing.
"""
import ast
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
SMOKED = sorted(p.name for p in [*SCRIPTS.glob("bench_*.py"), *SCRIPTS.glob("verify_*.py")])
NUM = r"([-+0-9.e]+|nan|inf)"
LABEL = r"(reproduced|not reproduced|inconclusive|not checked)"          # chainlab.papers.Verdict.label


def positive(values, at_least=1):
    """The values (strings) as floats, after checking there are enough and each is finite and > 0."""
    got = [float(v) for v in values]
    assert len(got) >= at_least, f"expected at least {at_least} values, found {got}"
    assert all(math.isfinite(v) and v > 0 for v in got), got
    return got


def rows(pattern, text, at_least=1):
    found = re.findall(pattern, text, flags=re.M)
    assert len(found) >= at_least, f"expected ≥ {at_least} lines matching {pattern!r} in:\n{text[-3000:]}"
    return found


# -- what each script must print --------------------------------------------------------------------


def check_bench_archive(out):
    appends = rows(rf"^\s*([01])\s+[01]\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}$", out, 2)
    assert [a[0] for a in appends] == ["0", "1"]
    positive([a[-1] for a in appends], 2)                                   # copy-append / append per row
    positive(rows(rf"last/first append: chainlab.archive {NUM}, copy-append {NUM};", out)[0], 2)
    fmt = dict((label.strip(), r) for label, *r in rows(
        rf"^(archive gzip-1 \(shipped\)|archive gzip-4|np.savez|np.savez_compressed)\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}"
        rf"\s+{NUM}\s+{NUM}$", out, 4))
    for label, r in fmt.items():
        positive(r[3:], 3)
    assert [float(v) for v in fmt["np.savez"][3:]] == [1.0, 1.0, 1.0]       # the reference row


def check_bench_binder(out):
    found = rows(rf"^(gradient|zplus|lrp-epsilon)\s+{NUM} s\s+{NUM} s \(×{NUM}\)\s+{NUM} s \(×{NUM}\)$", out, 3)
    assert [f[0] for f in found] == ["gradient", "zplus", "lrp-epsilon"]
    for f in found:
        positive(f[1:], 5)


def check_bench_distributed(out):
    positive(rows(rf"^serial \(1 thread\):\s+{NUM} images/s", out))
    positive(rows(rf"^ratio cluster/serial: {NUM}x; chains bit-identical: True$", out))


def check_bench_extract(out):
    layers = rows(rf"^(conv1|conv2|pool|conv3|gap|fc1|fc2)\s+\d+×\d+\s+[\d,]+ \|\s+{NUM}\s+{NUM} \|\s+{NUM}\s+{NUM}"
                  rf"\s+{NUM}× \|", out, 7)
    assert [r[0] for r in layers] == ["conv1", "conv2", "pool", "conv3", "gap", "fc1", "fc2"]
    positive([r[5] for r in layers], 7)                                     # jacrev / chainlab
    positive(rows(rf"^all built both ways\s+\|\s+{NUM}\s+\|\s+\|\s+{NUM}\s+{NUM}×$", out)[0], 3)


def check_bench_products(out):
    spmm = rows(rf"^\s+(conv1|conv2|pool|conv3|gap)\s+\(\d+, \d+\)\s+\d+\s+(1|4)\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}"
                rf"\s+{NUM}\s+{NUM}\s+{NUM}$", out, 10)
    for r in spmm:
        positive([r[4], r[7]], 2)                                           # scipy / ours, CSC and CSR
        assert float(r[8]) < 1e-12                                          # equal to scipy's product
    steps = rows(rf"^\s+\d+ \w+\s+.+->(csc|dense)\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}", out, 6)
    for s in steps:
        positive([s[4]])
        assert float(s[5]) < 1e-12                                          # the same product as scipy's sweep
    positive(rows(rf"sum of steps: chainlab {NUM} s, scipy {NUM} s, ratio {NUM};", out)[0], 3)
    positive(rows(r"^\s+(?:chain\.apply|implicit chain).+autograd/chainlab\s+" + NUM + "$", out, 3), 3)
    diffs = rows(rf"rel diff auto vs streamed {NUM}, implicit vs streamed {NUM}", out)[0]
    assert max(float(d) for d in diffs) < 1e-12
    (grad,) = rows(rf"gradient: chainlab vs float64 autograd on 5 vectors, rel diff {NUM}", out)
    assert float(grad) < 1e-12
    cross = rows(rf"^\| \d+² \| {NUM} \| {NUM} \| {NUM} \| {NUM} \| {NUM} \| (kernel|BLAS) \|$", out, 4)
    for density, kern, blas, ratio, diff, takes in cross:
        positive([kern, blas, ratio], 3)
        assert float(diff) < 1e-12 and takes == ("BLAS" if float(density) > 0.1 else "kernel")


def check_bench_scale(out):
    layers = rows(rf"^\s+\d+ \S+\s+(implicit|residual)\s+\d+\s+\d+\s+{NUM}\s+{NUM}\s+{NUM}\s+\d+", out, 5)
    for r in layers:
        s1, s2, ratio = positive(r[1:], 3)
        assert s1 >= s2 and ratio >= 1.0 and abs(ratio - s1 / s2) < 1e-4 * ratio
    mat = rows(rf"svds {NUM} s \(σ {NUM}, {NUM}\) vs implicit 0 bytes, svds {NUM} s \(σ {NUM}, {NUM}\); ratio "
               rf"materialized/implicit incl. build {NUM}x", out)[0]
    assert all(abs(float(a) - float(b)) <= 1e-3 * float(b) for a, b in zip(mat[1:3], mat[4:6]))   # σ1, σ2 both ways
    positive([mat[6]])
    p = rows(rf"^P_2 .+power σ1 {NUM} σ2 {NUM} .+lanczos σ1 {NUM} σ2 {NUM} ", out)[0]
    (svds,) = rows(rf"^\s+svds σ1 {NUM} σ2 {NUM}", out)
    lz, ar = [float(v) for v in p[2:4]], [float(v) for v in svds]
    assert all(abs(a - b) <= 2e-3 * b for a, b in zip(lz, ar))             # Lanczos (tol 1e-3) agrees with ARPACK
    rows(r"^CSC, 2 images, injections after layers \[\d+, \d+\], 3 pairs: \d+ records", out)


def check_bench_spectral(out):
    methods = rows(rf"^(vanilla|gradcam|guided-gradcam \(authors\)|smoothgrad|all methods)\s+{NUM}\s+{NUM}\s+{NUM}"
                   rf"\s+{NUM}\s+{NUM}x", out, 5)
    assert [m[0] for m in methods] == ["vanilla", "gradcam", "guided-gradcam (authors)", "smoothgrad", "all methods"]
    for m in methods:
        positive(m[1:], 5)
    for label in ("vanilla", "guided-gradcam \\(authors\\)"):
        (d,) = rows(rf"^{label}\s+.+x  max \|ΔEF\| {NUM}$", out)
        # the same maps both ways up to float32 rounding: the pipelines sum in other orders, and a rounding that
        # swaps two near-tied pixels swaps their ranks (EF is a function of the rank map): a few 1e-6 of EF ≈ 0.3
        # on 32×32 maps (2.5e-6 on scenes-cnn-relu's 4 smoke images); other maps differ by far more (M2: ΔEF ≥ 0.07)
        assert float(d) < 1e-5
    (d,) = rows(rf"^spectral measure only .+x\), max \|ΔEF\| {NUM}$", out)
    assert float(d) < 1e-12
    vg, gc = rows(rf"^chains .+max \|ΔEF\| vs batched float64 autograd: VG {NUM}, GradCAM {NUM}$", out)[0]
    assert float(vg) < 1e-9 and float(gc) < 1e-4


def check_bench_verify(out):
    for method in ("lrp-a1b0", "gradient"):
        r = rows(rf"^{method}\s+batched implicit (float32|float64)\s+2\s+{NUM}\s+{NUM}\s+{NUM}$", out, 2)
        c32, c64 = float(r[0][3]), float(r[1][3])
        assert abs(c32 - c64) < 1e-5                                        # float32 and float64 passes agree
        positive(rows(rf"ratio batched/per-image: float32 ×{NUM}, float64 ×{NUM}", out)[0], 2)
    rows(rf"^\s+S4\s+{LABEL}\s+{NUM} s$", out)


def check_bench_verify_own(out):
    rows(rf"^shipped net digits-cnn: input \(1, 8, 8\), {NUM} G multiply-adds per image, 2 images;", out)
    mat = positive(rows(rf"^one image's chain materialized as CSC would take {NUM} GB", out))
    found = rows(rf"^\| (S5|M2) \| {LABEL} \| {NUM} \| {NUM} \| {NUM} \| {NUM} \| {NUM} \|$", out, 2)
    assert [f[0] for f in found] == ["S5", "M2"]
    for f in found:
        a_priori, est, secs, peak, ratio = positive(f[2:], 5)
        assert ratio == pytest.approx(mat[0] / peak, rel=0.03)           # the ratio is the two columns' ratio
    total, n, first, later, fixed = rows(rf"^summary: {NUM} s for (\d+) image\(s\) .*\(image 1 {NUM} s, each "
                                         rf"further image {NUM} s, start-up and deciding {NUM} s\)", out)[0]
    assert int(n) == 2 and float(total) == pytest.approx(sum(float(f[4]) for f in found), abs=1.1)
    assert float(first) + float(later) + float(fixed) == pytest.approx(float(total), abs=2)   # 2 images
    default = rows(r"^summary: the default run of .*: --n-images (\d+), claims ([A-Z0-9,]+) —", out)[0]
    assert int(default[0]) == 200 and "S1" in default[1].split(",")  # a tiny net: every claim, the cap (Sixt's 200)


def check_bench_batch(out):
    found = rows(rf"^([a-z0-9-]+)\s+{NUM}\s+{NUM}\s+{NUM}×\s+{NUM}\s+{NUM}", out, 1)
    for f in found:
        positive(f[1:4], 3)
        assert abs(float(f[4]) - float(f[5])) < 1e-4                         # both trees give the same CSC
    positive(rows(rf"^peak RSS: old {NUM} MiB, new {NUM} MiB", out)[0], 2)


def check_bench_load(out):
    found = rows(rf"^\| (ACTIVE|PASSIVE) \| {NUM} \| {NUM} \| {NUM}× \|$", out, 2)
    assert [f[0] for f in found] == ["ACTIVE", "PASSIVE"]
    for f in found:
        idle, busy, slow = positive(f[1:], 3)
        assert abs(busy / idle - slow) <= slow * 1e-4 * (1 / idle + 1 / busy) + 0.006  # the two timings' ratio (to rounding)
    rows(rf"^summary: under a competing \d+-process load verify --quick slows {NUM}× .* and {NUM}× ", out)


def check_bench_import(out):
    found = rows(rf"^\s+(import torch|import chainlab|import torch, chainlab)\s+{NUM}\s+{NUM}\s+{NUM}\s+", out, 3)
    assert [f[0] for f in found] == ["import torch", "import chainlab", "import torch, chainlab"]
    for f in found:
        positive(f[1:], 3)
    rows(rf"^summary: this tree: import chainlab adds {NUM} s to import torch \({NUM} s; target ≤ 0.3 s: (met|NOT met)\)", out)


def check_bench_papers(out):
    claims = rows(rf"^([BM]\d)\s+{LABEL}\s+{NUM} s$", out, 3)
    assert [c[0] for c in claims] == ["B1", "M1", "M3"]
    positive(rows(rf"^per paper: B {NUM} s, M {NUM} s; total {NUM} s, \d+ records$", out)[0], 3)
    positive(rows(rf"^conv probe (?:before|after): {NUM} GFLOP/s", out, 2))


def check_verify(out, folder):
    rows(r"^smoke: claims [SBM]\d(, [SBM]\d)* exist; running S4 --quick in their place$", out)
    rows(rf"^S4  {LABEL}$", out)
    rows(r"^    here:  digits-cnn: .*\d", out)
    assert re.search(rf"^\| S4 \|.*\| \*\*{LABEL}\*\* \|", (folder / "verify-S4.md").read_text(), flags=re.M)


def check_verify_deeplift_precision(out, folder):
    """This tree's table has every DeepLIFT variant; float32 and float64 agree (map cosine ≥ 0.999, CSC per boundary
    within 0.01: issue 24 §1) and Rescale/RevealCancel sum to delta in float32 within 1e-4 of Σ|C|; -o DIR holds what
    was printed and the numbers."""
    after = out.split("— after (this tree)")[-1]
    names = rows(r"^  (deeplift-(?:rescale|revealcancel|ablation)(?:-pm)?) ", after, 6)
    assert sorted(set(names)) == sorted(f"deeplift-{v}{s}" for v in ("rescale", "revealcancel", "ablation")
                                        for s in ("", "-pm")), names
    cos, dcsc = rows(rf"^this tree, every DeepLIFT variant: min map cosine float32/float64 {NUM}, max \|ΔCSC\| {NUM} ",
                     out)[0]
    assert float(cos) >= 0.999 and float(dcsc) <= 0.01, (cos, dcsc)
    for rule in ("package rule Rescale and RevealCancel", "± rule Rescale-pm and RevealCancel-pm"):
        rel = rows(rf"^this tree, {rule}: max \|ΣC − Δf\| / Σ\|C\| (?:in float32 )?{NUM} ", out)[0]
        assert float(rel) <= 1e-4, (rule, rel)
    assert (folder / "deeplift_precision.txt").read_text() == out       # the header line comes first in both
    assert '"after"' in (folder / "deeplift_precision.json").read_text()


def markdown_tables(out):
    """The markdown tables of an output (runs of lines starting with ``|``, the form the README's bench blocks show),
    after checking each is well-formed: a header, a separator of ---/---: cells, rows with the header's cell count."""
    tables, cur = [], []
    for ln in out.splitlines() + [""]:
        if ln.startswith("|"):
            cur.append(ln)
        elif cur:
            tables.append(cur)
            cur = []
    for t in tables:
        cells = [len(re.findall(r"(?<!\\)\|", ln)) - 1 for ln in t]
        assert len(t) >= 3 and len(set(cells)) == 1, f"malformed table:\n" + "\n".join(t)
        assert re.fullmatch(r"\|(-{3,}:?\|)+", t[1]), t[1]
    return tables


# scripts whose results the README shows (bench-NAME blocks): at least this many markdown tables
README_TABLES = {"bench_archive.py": 1, "bench_distributed.py": 1, "bench_extract.py": 1, "bench_products.py": 3,
                 "bench_scale.py": 2, "bench_load.py": 1}

# verify scripts that are not claim scripts (the rest: check_verify)
VERIFY_CHECKS = {"verify_deeplift_precision.py": check_verify_deeplift_precision}

CHECKS = {
    "bench_archive.py": check_bench_archive, "bench_batch.py": check_bench_batch, "bench_binder.py": check_bench_binder,
    "bench_distributed.py": check_bench_distributed, "bench_extract.py": check_bench_extract,
    "bench_import.py": check_bench_import, "bench_load.py": check_bench_load, "bench_papers.py": check_bench_papers, "bench_products.py": check_bench_products,
    "bench_scale.py": check_bench_scale, "bench_spectral.py": check_bench_spectral, "bench_verify.py": check_bench_verify,
    "bench_verify_own.py": check_bench_verify_own,
}


# -- the runs --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """{script: (completed process, its --output path)} of every script run with --smoke."""
    tmp = tmp_path_factory.mktemp("smoke")
    env = {k: v for k, v in os.environ.items() if k != "CHAINLAB_DATA"}
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")   # 2 runs, 2 cores

    def run(name):
        out = tmp / (f"{name}.txt" if name.startswith("bench_") else name.removesuffix(".py"))
        cmd = [sys.executable, str(SCRIPTS / name), "--smoke", "--output" if name.startswith("bench_") else "-o", str(out)]
        return name, (subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env, timeout=600), out)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, SMOKED))


def test_every_bench_and_verify_script_is_checked():
    assert SMOKED, "no scripts found"
    unchecked = [s for s in SMOKED if s not in CHECKS and not s.startswith("verify_")]
    assert not unchecked, f"scripts without a smoke check in tests/test_scripts.py: {unchecked}"


@pytest.mark.parametrize("name", SMOKED)
def test_smoke_run_prints_its_tables(smoke, name):
    p, out = smoke[name]
    assert p.returncode == 0, f"{name} --smoke exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    if name.startswith("verify_"):
        VERIFY_CHECKS.get(name, check_verify)(p.stdout, out)
        return
    CHECKS[name](p.stdout)
    assert len(markdown_tables(p.stdout)) >= README_TABLES.get(name, 0), name
    last = p.stdout.rstrip().splitlines()[-1]                               # the machine, load at start and end
    assert re.match(rf"summary: machine: \d+ cores, \d+ torch threads; load average {NUM} at the start and {NUM} at "
                    rf"the end .*; the run took \d+ s$", last), last
    written = out.read_text()                                               # --output: what it printed, header first
    assert written.startswith(f"# {name} --smoke --output {out} — ")
    assert written == p.stdout


def test_the_checks_fail_on_a_broken_table():
    """Negative control: a ratio printed as nan, a missing row, a disagreement each fail their check."""
    good = ("digits-cnn, 1 images\nrule  …\ngradient   0.1 s  0.2 s (×2)  0.3 s (×3)\nzplus   0.1 s  0.2 s (×2)  "
            "0.3 s (×3)\nlrp-epsilon   0.1 s  0.2 s (×2)  0.3 s (×3)\n")
    check_bench_binder(good)
    with pytest.raises(AssertionError):
        check_bench_binder(good.replace("(×3)\nlrp", "(×nan)\nlrp"))
    with pytest.raises(AssertionError):
        check_bench_binder(good.replace("zplus", "zplux"))
    prec = ("— after (this tree)\n"
            + "".join(f"  deeplift-{v}{s} 1.0\n" for v in ("rescale", "revealcancel", "ablation") for s in ("", "-pm"))
            + "this tree, every DeepLIFT variant: min map cosine float32/float64 1.000000, max |ΔCSC| 0.02 (c)\n"
            + "this tree, package rule Rescale and RevealCancel: max |ΣC − Δf| / Σ|C| in float32 1e-07 (m)\n"
            + "this tree, ± rule Rescale-pm and RevealCancel-pm: max |ΣC − Δf| / Σ|C| 1e-15 (float64)\n")
    with pytest.raises(AssertionError, match="0.02"):
        check_verify_deeplift_precision(prec, Path("/nonexistent"))        # |ΔCSC| 0.02 > 0.01: fails before the files
    with pytest.raises(AssertionError):
        check_bench_distributed("serial (1 thread):  3.0 images/s\nratio cluster/serial: 2.1x; chains bit-identical: False\n")
    table = "| a | b |\n|---|---:|\n| 1 | 2 |\n"
    assert len(markdown_tables("x\n" + table + "y\n" + table)) == 2
    with pytest.raises(AssertionError):
        markdown_tables(table + "| 1 | 2 | 3 |\n")                     # a row with a cell too many
    with pytest.raises(AssertionError):
        markdown_tables(table.replace("|---|---:|", "| 1 | 2 |"))        # no separator line


# -- public names only ------------------------------------------------------------------------------


def private_uses(source):
    """[(line, what)] of private chainlab names a script uses: ``from chainlab… import _x``, a ``_private``
    module in an import path, ``<chainlab name>._x`` attribute access, ``getattr(<chainlab name>, "_x")`` and
    ``sys.modules["chainlab…"]`` (reaching a module behind a public name)."""
    tree = ast.parse(source)
    bound, found = set(), []
    private = lambda n: n.startswith("_") and not (n.startswith("__") and n.endswith("__"))     # noqa: E731
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "chainlab":
                    bound.add((a.asname or a.name).split(".")[0])
                    if any(private(p) for p in a.name.split(".")):
                        found.append((node.lineno, a.name))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "chainlab":
            if any(private(p) for p in node.module.split(".")):
                found.append((node.lineno, node.module))
            for a in node.names:
                bound.add(a.asname or a.name)
                if private(a.name):
                    found.append((node.lineno, f"{node.module}.{a.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                found.append((node.lineno, f"{root.id}….{node.attr}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            args = node.args
            root = args[0] if args else None
            while isinstance(root, ast.Attribute):
                root = root.value
            if (len(args) > 1 and isinstance(root, ast.Name) and root.id in bound and isinstance(args[1], ast.Constant)
                    and isinstance(args[1].value, str) and private(args[1].value)):
                found.append((node.lineno, f"getattr(…, {args[1].value!r})"))
        elif (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "modules"
              and isinstance(node.slice, ast.Constant) and str(node.slice.value).startswith("chainlab")):
            found.append((node.lineno, f"sys.modules[{node.slice.value!r}]"))
    return sorted(found)


@pytest.mark.parametrize("name", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_scripts_use_public_names_only(name):
    assert private_uses((SCRIPTS / name).read_text()) == []


def test_the_public_name_check_sees_private_uses():
    """Negative control: the forms that broke bench_products (``pr._start``) and its cousins are found."""
    src = ("import sys\nimport chainlab\nfrom chainlab import linalg as pr\nfrom chainlab.nets.storage import _read_state\n"
           "from chainlab.linalg import _private_mod\nimport chainlab._hidden\nP = pr._start(1, 2)\n"
           "q = chainlab.linalg.products._settle\nr = getattr(pr, '_start')\nS = sys.modules['chainlab.measures.spectral']\n"
           "ok = pr.product, chainlab.__version__, sys._getframe, pr.__name__\n")
    got = [line for line, _ in private_uses(src)]
    assert got == [4, 5, 6, 7, 8, 9, 10]
