"""Benchmark: ImageNet-scale nets (VGG-16, ResNet-50 at 224×224) through implicit operators.

For one seeded random input and rule (default: gradient) it extracts the chain with
``materialize=False`` and prints, per layer, σ1 and σ2 on the implicit operator by Golub–Kahan–Lanczos
(``chainlab.measures.lanczos_singular_values``, default) or ARPACK ``svds`` (``--method svds``), the
seconds and the number of operator products, then the total time and the peak resident memory
(VmHWM of /proc/self/status, = ru_maxrss).

The obvious alternative is to materialize each layer matrix and run svds on the CSC matrix: at
224×224 only VGG-16's first conv fits (87 M entries; the second would store 1.85·10⁹ entries,
~22 GB), so that comparison is made for that layer (build time, bytes, svds seconds, ratio).
Options: ``--prefix K …`` σ1/σ2 of P_K by matrix-free block subspace iteration
(``chainlab.measures.prefix_power``) and by Lanczos on the LinearOperator of P_K (ARPACK svds too
with ``--compare``); ``--csc N``
CSC of N images at two injection layers (``chainlab.measures.csc``).

    python scripts/bench_scale.py [--net vgg16|resnet50] [--rule gradient] [--dtype float32] [--method lanczos|svds] [--tol 1e-3]
                                  [--compare] [--prefix 3] [--csc 2] [--layers 1,5] [--size 224] [--output FILE]

``--smoke``: the tiny zoo ResNet (8×8 input) with every option (compare, a prefix, CSC of 2 images; seconds).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse.linalg as spla
import torch

import _bench
import chainlab
from chainlab.measures import csc, implicit_prefix, lanczos_singular_values, prefix_power, singular_values
from _memory import peak_mib


def peak_gb() -> float:
    return peak_mib() / 1024


class Counting(spla.LinearOperator):
    """A LinearOperator that counts products with the operator and its transpose."""

    def __init__(self, op):
        super().__init__(dtype=np.dtype(op.dtype), shape=op.shape)
        self.op, self.n = op, 0

    def _matmat(self, V):
        self.n += V.shape[1]
        return self.op.matmat(V)

    def _rmatmat(self, U):
        self.n += U.shape[1]
        return self.op.rmatmat(U)

    _matvec = lambda self, v: self._matmat(v.reshape(-1, 1))          # noqa: E731
    _rmatvec = lambda self, u: self._rmatmat(u.reshape(-1, 1))        # noqa: E731


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="vgg16", choices=list(chainlab.models.ZOO_NAMES))
    ap.add_argument("--size", type=int, default=None, help="input height and width (default: the net's, 224)")
    ap.add_argument("--rule", default="gradient")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--method", default="lanczos", choices=["lanczos", "svds"],
                    help="per-layer σ: Golub–Kahan–Lanczos stopping when the values settle, or ARPACK svds")
    ap.add_argument("--tol", type=float, default=1e-3,
                    help="relative tolerance (lanczos: growth over the last quarter of the steps; svds: residual)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare", action="store_true",
                    help="materialized svds of the first layer, and ARPACK svds of the prefixes, as well")
    ap.add_argument("--prefix", type=int, nargs="*", default=[], help="k of P_k for power iteration")
    ap.add_argument("--power-iters", type=int, default=40, help="block power iteration steps per P_k (at most)")
    ap.add_argument("--csc", type=int, default=0, help="images for CSC (0: skip)")
    ap.add_argument("--skip-layers", action="store_true")
    ap.add_argument("--layers", type=str, default=None, help="comma-separated 1-based layer numbers (default: all)")
    _bench.add_options(ap)
    args = ap.parse_args(argv)
    if args.smoke:
        args.net, args.compare, args.prefix, args.power_iters, args.csc = "resnet-tiny", True, [2], 5, 2
    with _bench.printed_to(args.output):
        run(args)


def run(args):
    t0 = time.perf_counter()
    net = chainlab.models.build(args.net)
    args.size = args.size or net.input_shape[-1]
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed))
    t = time.perf_counter()
    chain = chainlab.extract(net, x, args.rule, materialize=False, dtype=args.dtype)
    t_ext = time.perf_counter() - t
    print(f"{args.net} {args.size}×{args.size}, rule {args.rule}, {args.dtype}, {len(chain)} operators "
          f"({', '.join(sorted({op.kind for op in chain}))}); torch threads {torch.get_num_threads()}")
    print(f"model build {t - t0:.1f} s, extraction (implicit) {t_ext:.1f} s, peak memory {peak_gb():.2f} GB")
    md_layers, md_prefix, summary = [], [], [
        f"{args.net} at {args.size}×{args.size} (seeded random input and init, seed {args.seed}), rule {args.rule}, "
        f"{args.dtype}: implicit extraction (materialize=False) {t_ext:.3g} s"]

    if not args.skip_layers:
        print(f"\nper-layer σ1, σ2 by {args.method} (tol {args.tol:g}) on the implicit operators"
              + ("; lanczos (one-sided reorthogonalization) stops when σ1, σ2 grew < tol over the last quarter of "
                 "the steps ('stalled'; σ are lower bounds, growth ≈ 0.8 × remaining relative error) or the "
                 "residuals are < tol·σ ('residual')" if args.method == "lanczos" else ""))
        print(f"{'k':>3} {'layer':<16} {'kind':<9} {'n_in':>9} {'n_out':>9} {'sigma1':>12} {'sigma2':>12} "
              f"{'s1/s2':>9} {'products':>8} {'seconds':>8} {'stop':>9} {'resid/s1':>9} {'growth':>8}")
        t_layers = time.perf_counter()
        pick = None if args.layers is None else {int(v) - 1 for v in args.layers.split(",")}
        for i, op in enumerate(chain):
            if pick is not None and i not in pick:
                continue
            c = Counting(op)
            t = time.perf_counter()
            stop, res, growth = "", float("nan"), float("nan")
            if args.method == "lanczos" and min(op.shape) > 1500:
                r = lanczos_singular_values(c.matvec, c.rmatvec, op.shape, top=2, tol=args.tol,
                                            dtype=np.float32 if args.dtype == "float32" else np.float64)
                s, stop, res, growth = r.sigma, r.converged or "maxiter", float(r.residuals.max() / r.sigma[0]), r.growth
            else:
                s = singular_values(c, 2, tol=args.tol)
            dt = time.perf_counter() - t
            r = s[0] / s[1] if s[1] > 0 else float("inf")
            print(f"{i + 1:>3} {chain.names[i]:<16} {op.kind:<9} {op.shape[0]:>9} {op.shape[1]:>9} {s[0]:>12.6g} "
                  f"{s[1]:>12.6g} {r:>9.5f} {c.n:>8} {dt:>8.1f} {stop:>9} {res:>9.1e} {growth:>8.1e}", flush=True)
            md_layers.append([i + 1, f"`{chain.names[i]}`", op.kind, f"{op.shape[0]:,} × {op.shape[1]:,}", f"{s[0]:.6g}",
                              f"{s[1]:.6g}", f"{r:.5f}", c.n, f"{dt:.3g}", stop or "svds (small)"])
        total = time.perf_counter() - t_layers
        n = len(chain) if pick is None else len(pick)
        print(f"{n} of {len(chain)} layers: {total:.1f} s (target for all: < 120 s); peak memory {peak_gb():.2f} GB")
        summary.append(f"σ1, σ2 of {n} of the {len(chain)} operators by {args.method} (tol {args.tol:g}) in {total:.3g} s "
                       f"(issue target for all of VGG-16's: < 120 s on 2 idle cores)")

    if args.compare:
        op = chain[0]
        t = time.perf_counter()
        S = op.to_sparse("csc")
        t_mat = time.perf_counter() - t
        nbytes = S.data.nbytes + S.indices.nbytes + S.indptr.nbytes
        t = time.perf_counter()
        s_m = singular_values(chainlab.linalg.SparseOperator(S), 2, tol=args.tol)
        t_sm = time.perf_counter() - t
        t = time.perf_counter()
        s_i = singular_values(op, 2, tol=args.tol)
        t_si = time.perf_counter() - t
        print(f"\nlayer 1 ({chain.names[0]}): materialized CSC {S.nnz:,} entries, {nbytes / 2**30:.2f} GB, built in "
              f"{t_mat:.1f} s; svds {t_sm:.1f} s (σ {s_m[0]:.6g}, {s_m[1]:.6g}) vs implicit 0 bytes, svds {t_si:.1f} s "
              f"(σ {s_i[0]:.6g}, {s_i[1]:.6g}); ratio materialized/implicit incl. build "
              f"{(t_mat + t_sm) / t_si:.2f}x; peak memory {peak_gb():.2f} GB")
        summary.append(f"layer 1 materialized as CSC ({S.nnz:,} entries, {nbytes / 2**30:.2f} GB, built in {t_mat:.3g} s): "
                       f"ARPACK svds {t_sm:.3g} s on it vs {t_si:.3g} s on the implicit operator (materialized / implicit "
                       f"incl. the build {(t_mat + t_sm) / t_si:.3g}×)")
        del S

    if args.prefix:
        print(f"\nprefix products P_k = M_1 ⋯ M_k, matrix-free through chain.apply / chain.rapply: block power "
              f"iteration (8 columns, residual tol 1e-6, at most {args.power_iters} steps) and Lanczos (tol {args.tol:g})"
              + ("; ARPACK svds (tol 1e-6) as well" if args.compare else ""))
    for k in args.prefix:
        t = time.perf_counter()
        r = prefix_power(chain, k, top=2, extra=6, tol=1e-6, maxiter=args.power_iters)
        t_pow = time.perf_counter() - t
        c = Counting(implicit_prefix(chain, k))
        t = time.perf_counter()
        lz = lanczos_singular_values(c.matvec, c.rmatvec, c.shape, top=2, tol=args.tol,
                                     dtype=np.float32 if args.dtype == "float32" else np.float64)
        t_lz = time.perf_counter() - t
        print(f"P_{k} ({c.shape[0]}×{c.shape[1]}, up to {chain.names[k - 1]}): power σ1 {r.sigma[0]:.6g} σ2 "
              f"{r.sigma[1]:.6g} σ1/σ2 {r.sigma[0] / r.sigma[1]:.5f} ({r.iterations} steps × 8 columns, converged "
              f"{r.converged}, residual {r.residuals.max():.1e}) {t_pow:.1f} s | lanczos σ1 {lz.sigma[0]:.6g} σ2 "
              f"{lz.sigma[1]:.6g} σ1/σ2 {lz.sigma[0] / lz.sigma[1]:.5f} ({c.n} products, {lz.converged or 'maxiter'}, "
              f"growth {lz.growth:.1e}) {t_lz:.1f} s; peak {peak_gb():.2f} GB", flush=True)
        md_prefix.append([f"P_{k} ({args.rule}, up to `{chain.names[k - 1]}`)",
                          f"{lz.sigma[0]:.6g}, {lz.sigma[1]:.6g}, {lz.sigma[0] / lz.sigma[1]:.5f}",
                          f"{c.n} ({lz.converged or 'maxiter'})", f"{t_lz:.3g}",
                          f"{r.sigma[0]:.6g}, {r.sigma[1]:.6g}",
                          f"{r.iterations} × 8 ({'converged' if r.converged else 'not converged'}, residual "
                          f"{r.residuals.max():.1e})", f"{t_pow:.3g}"])
        if args.compare:
            c = Counting(implicit_prefix(chain, k))
            t = time.perf_counter()
            s = np.sort(spla.svds(c, k=2, tol=1e-6, return_singular_vectors=False,
                                  v0=np.random.default_rng(0).standard_normal(min(c.shape))))[::-1]
            print(f"    svds σ1 {s[0]:.6g} σ2 {s[1]:.6g} ({c.n} products) {time.perf_counter() - t:.1f} s", flush=True)

    if args.csc:
        chains = [chain]
        for j in range(1, args.csc):
            xj = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed + j))
            chains.append(chainlab.extract(net, xj, args.rule, materialize=False, dtype=args.dtype))
        L = len(chain)
        layers = [L // 2, L - 1]
        t = time.perf_counter()
        rows = csc(chains, layers=layers, pairs=3)
        t_csc = time.perf_counter() - t
        med = [r for r in rows if r["quantity"] == "csc"]
        print(f"\nCSC, {len(chains)} images, injections after layers {layers}, 3 pairs: {len(rows)} records in "
              f"{t_csc:.1f} s; peak {peak_gb():.2f} GB")
        for r in med[:: max(1, len(med) // 8)]:
            base = next(b["value"] for b in rows if b["quantity"] == "baseline" and b["k"] == r["k"]
                        and b["layer"] == r["layer"])
            print(f"  inject after {r['inject']} → input of {r['to']}: CSC {r['value']:.4f} (random {base:.4f}, "
                  f"d = {r['d']})")

        summary.append(f"CSC of {len(chains)} images, injections after layers {layers}, 3 pairs: {len(rows)} records in "
                       f"{t_csc:.3g} s")

    print(f"\npeak memory (VmHWM) {peak_gb():.2f} GB (limit 16 GB); wall {time.perf_counter() - t0:.1f} s")
    if md_layers:
        print(f"\ntable: {args.net} at {args.size}×{args.size}, every operator's σ1, σ2 on the implicit operator by "
              f"{args.method} (tol {args.tol:g}): products with the operator and its transpose, seconds, why it stopped")
        _bench.table(["#", "layer", "kind", "n_in × n_out", "σ1", "σ2", "σ1/σ2", "products", "s", "stopped"], md_layers)
    if md_prefix:
        print(f"\ntable: prefix products P_k = M_1 ⋯ M_k of {args.net} at {args.size}×{args.size}, never formed (chain.apply / "
              f"chain.rapply): Lanczos (tol {args.tol:g}) and block power iteration (8 columns, residual tol 1e-6, at most "
              f"{args.power_iters} steps)")
        _bench.table(["P_k", "Lanczos σ1, σ2, σ1/σ2", "products", "Lanczos s", "power σ1, σ2", "power steps", "power s"],
                     md_prefix)
    summary.append(f"peak memory (VmHWM) {peak_gb():.2f} GB")
    print("summary: " + "; ".join(summary))


if __name__ == "__main__":
    main()
