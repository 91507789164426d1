"""The ``chainlab`` command line (typer).

The CLI is the only place that knows about files, progress bars and exit codes.
Errors from bad input (unknown model or rule, missing files, bad ranges) are
printed as one line with exit code 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import sys
import time
from typing import List, Optional

import numpy as np
import typer
from tqdm import tqdm

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="The backward pass of a trained PyTorch network as an explicit chain of matrices.")

STATE = {"debug": False}

SUMMARY_RULES = ["gradient", "lrp-0", "zplus", "alpha-beta", "epsilon-plus"]


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")):
    STATE["debug"] = debug


def parse_range(spec: str, n: int) -> list[int]:
    """'0:5' → [0..4], '3' → [3], '1,4,7' → [1, 4, 7]; checked against n items."""
    try:
        if ":" in spec:
            a, b = spec.split(":", 1)
            idx = list(range(int(a or 0), int(b) if b else n))
        else:
            idx = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"bad image range {spec!r}: use 'start:stop', 'i' or 'i,j,k'") from None
    bad = [i for i in idx if not 0 <= i < n]
    if not idx or bad:
        raise ValueError(f"image range {spec!r} selects {bad or 'nothing'}; there are {n} test images (0..{n - 1})")
    return idx


def layer_table(chain) -> str:
    """One row per operator: layer, rule, shape, nnz, column-sum min/max, σ1."""
    from .measures import singular_values

    rows = [("#", "layer", "rule", "shape (n_in × n_out)", "nnz", "colsum min", "colsum max", "σ1")]
    for i, (op, name, rule) in enumerate(zip(chain, chain.names, chain.layer_rules)):
        cs = op.column_sums()
        s1 = singular_values(op, 1)[0]
        rows.append((str(i), name, rule, f"{op.shape[0]} × {op.shape[1]}", f"{op.nnz:,}", f"{cs.min():.4g}",
                     f"{cs.max():.4g}", f"{s1:.4g}"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(v.rjust(w) if c in (0, 4, 5, 6, 7) else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@app.command()
def summary(
    models: List[str] = typer.Option(None, "--model", "-m", help="Shipped net(s) (default: all three)."),
    rules: List[str] = typer.Option(None, "--rule", "-r", help=f"Rule(s) (default: {', '.join(SUMMARY_RULES)})."),
    images: str = typer.Option("0:2", "--images", help="Test images: 'start:stop', 'i' or 'i,j'."),
):
    """Extract the chains of the shipped nets for a few test digits and print a per-layer table."""
    import chainlab

    names = list(models) if models else list(chainlab.models.NAMES)
    rules = list(rules) if rules else SUMMARY_RULES
    digits = chainlab.data.load_digits()
    idx = parse_range(images, len(digits.y_test))
    jobs = [(n, i, r) for n in names for i in idx for r in rules]
    nets = {}
    for n in names:
        nets[n] = chainlab.models.load(n)
    lo, hi = chainlab.data.INPUT_BOUNDS
    for n, i, r in tqdm(jobs, desc="extract", unit="chain", file=sys.stderr):
        net = nets[n]
        x = chainlab.data.model_input(n, digits.x_test[i:i + 1])
        t0 = time.perf_counter()
        opts = {"low": lo, "high": hi} if r in ("zbox", "lrp-cmp", "dtd") else {}
        chain = chainlab.extract(net, x, r, **opts)
        dt = time.perf_counter() - t0
        expl = chain.explain()
        tqdm.write(
            f"\n{n} · test image {i} (label {digits.y_test[i]}, predicted {chain.predicted}, "
            f"logit {chain.logits[chain.predicted]:.3f}) · rule {r} · {len(chain)} operators extracted in {dt:.2f}s\n"
            f"explanation: sum {expl.sum():.4g}, min {expl.min():.4g}, max {expl.max():.4g}\n" + layer_table(chain),
            file=sys.stdout,
        )


def main():
    """Console entry point: run the app, turning user errors into one line and an exit code."""
    try:
        rc = app(standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 — the one place errors meet the user
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # usage errors of typer's click
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        if STATE["debug"]:
            raise
        print(f"chainlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rc if isinstance(rc, int) else 0)

if __name__ == "__main__":
    main()
