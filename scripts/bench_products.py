"""Benchmark: chain products of sixt-cifar with chainlab's kernels vs scipy.sparse, numpy dgemm and autograd.

For the shipped sixt-cifar net (``--net``) at one test digit and each rule (default "zplus" and "gradient"):

1. SpMM per sparse layer: M @ V (V: n_out × c random, c in --spmm-cols; c = 1 is a vector) with
   ``chainlab.linalg.spmm`` vs scipy's ``M @ V`` on the same operands (results compared), ratio of the
   medians of --repeat runs each; M as stored (CSC) and as CSR.
2. Prefix sweep step by step: P_k = P_(k−1) M_k with ``chainlab.linalg.multiply`` (representation
   chosen per step) vs scipy's all-sparse sweep (csr @ csr, csr @ dense) on the same P_(k−1);
   per-step seconds, ratio, relative difference, and the effective GFLOP/s of steps with a dense operand.
3. The full ``chain.prefix_products()`` sweep (renormalized): total seconds and peak RSS growth.
4. numpy dgemm GFLOP/s measured in the same run (the machine's limit for the dense parts).
5. Propagating --vectors random vectors from the top: ``chain.apply`` (automatic association, forced
   streaming through the sparse layers, and the implicit chain of ``materialize=False`` = batched torch
   convolutions) vs the same number of torch autograd backward passes through the float32 model (one
   forward, retain_graph; timed in a fresh process), ratio; for "gradient" the results are compared with float64 autograd.

Timings print; nothing is asserted.  Run:

    python scripts/bench_products.py [--rules zplus gradient] [--vectors 1000] [--autograd-vectors 1000]
                                     [--output results/bench_products.txt]

``--smoke``: digits-cnn, the gradient only, small SpMM widths, 8 vectors, a small dgemm and bandwidth probe, autograd in this
process (seconds; the numbers mean nothing).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numba
import numpy as np
import scipy.sparse as sp
import torch

import _bench
import chainlab
from _memory import peak_mib, reset_peak, rss_mib
from chainlab import linalg as pr
from chainlab.linalg import products
from chainlab.linalg.products import DENSIFY_FOR_DENSE, DENSIFY_FOR_SPARSE


def rel(a, b) -> float:
    a = a.toarray() if sp.issparse(a) else np.asarray(a)
    b = b.toarray() if sp.issparse(b) else np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def timed(f, *args, **kw):
    t = time.perf_counter()
    out = f(*args, **kw)
    return out, time.perf_counter() - t


def warm_up():
    """Load the cached numba kernels (int32 indices, float64) outside the timings."""
    A = sp.random(50, 40, density=0.2, format="csc", random_state=0)
    B = sp.hstack([sp.random(40, 5, density=0.3, format="csc", random_state=1)] * 4, format="csc")
    V = np.ones((40, 3), order="F")
    pr.spmm(A, V), pr.spmm(A.tocsr(), V), pr.spmm(A, V[:, 0]), pr.spmm(A.tocsr(), V[:, 0])
    pr.dense_sparse(A.toarray().T, A), pr.column_norms(A), pr.column_norms(V)
    pr.spgemm(A, B), pr.spgemm(A, B, dense_above=0.0), pr.spgemm(A, B, group=False), pr.spgemm(A, B, group=False,
                                                                                                  dense_above=0.0)


def dgemm_gflops(m=3072, k=8192, n=1024, repeat=2):
    rng = np.random.default_rng(0)
    A, B = rng.random((m, k)), rng.random((k, n))
    A @ B
    best = min(timed(np.dot, A, B)[1] for _ in range(repeat))
    return 2.0 * m * k * n / best / 1e9, best


def streamed(M, c) -> int:
    """Bytes an SpMM must move at least: the matrix (values + indices + pointers), V and the result once."""
    return M.data.nbytes + M.indices.nbytes + M.indptr.nbytes + 8 * c * (M.shape[0] + M.shape[1])


def median_time(f, repeat):
    """(result, median seconds of ``repeat`` calls)."""
    ts = []
    for _ in range(repeat):
        out, t = timed(f)
        ts.append(t)
    return out, float(np.median(ts))


@numba.njit(parallel=True, cache=True)
def _parallel_sum(a):
    s = 0.0
    for i in numba.prange(a.shape[0]):
        s += a[i]
    return s


def read_bandwidth(mib=512, repeat=5):
    """GB/s of reading a large float64 array: one thread (numpy sum) and all threads (numba prange sum)."""
    a = np.random.default_rng(0).random(mib * 2**20 // 8)
    _parallel_sum(a)
    one = median_time(lambda: a.sum(), repeat)[1]
    all_ = median_time(lambda: _parallel_sum(a), repeat)[1]
    return a.nbytes / one / 1e9, a.nbytes / all_ / 1e9


def spmm_table(chain, widths, repeat):
    """Print the SpMM table; return {(layer group, c): [(CSC ratio, CSR ratio, rel diff)]} (ratio = scipy / ours)."""
    ranges = {}
    print(f"  SpMM per sparse layer, M @ V with V: n_out x c (float64), median of {repeat} runs; M stored CSC, "
          "and the same matrix as CSR (conversion not timed)")
    print(f"  {'layer':8s} {'shape':>16s} {'nnz':>10s} {'c':>4s} {'CSC ours s':>10s} {'scipy s':>8s} {'ratio':>6s} "
          f"{'CSR ours s':>10s} {'scipy s':>8s} {'ratio':>6s} {'rel diff':>9s} {'GB/s':>5s}")
    rng = np.random.default_rng(1)
    for name, op in zip(chain.names, chain):
        if op.kind != "sparse":
            continue
        M = op.matrix
        Mr = M.tocsr()
        for c in widths:
            V = rng.normal(size=(M.shape[1], c)) if c > 1 else rng.normal(size=M.shape[1])
            ours, t_ours = median_time(lambda: pr.spmm(M, V), repeat)
            ref, t_ref = median_time(lambda: M @ V, repeat)
            ours_r, t_ours_r = median_time(lambda: pr.spmm(Mr, V), repeat)
            ref_r, t_ref_r = median_time(lambda: Mr @ V, repeat)
            diff = max(rel(ours, ref), rel(ours_r, ref))
            print(f"  {name:8s} {str(M.shape):>16s} {M.nnz:10d} {c:4d} {t_ours:10.4f} {t_ref:8.4f} {t_ref / t_ours:6.3g} "
                  f"{t_ours_r:10.4f} {t_ref_r:8.4f} {t_ref_r / t_ours_r:6.3g} "
                  f"{diff:9.1e} {streamed(M, c) / t_ours_r / 1e9:5.1f}")
            group = "conv" if name.startswith("conv") else "other"
            ranges.setdefault((group, c), []).append((name, t_ref / t_ours, t_ref_r / t_ours_r, diff,
                                                      streamed(M, c) / t_ours_r / 1e9))
    return ranges


def sweep_table(chain, peak_gflops):
    print("  prefix sweep step by step: P_k = P_(k-1) M_k, same operands (scipy: all-sparse csr sweep)")
    print(f"  {'k':>2s} {'layer':7s} {'step':22s} {'density':>8s} {'chainlab s':>11s} {'scipy s':>9s} {'ratio':>7s} "
          f"{'rel diff':>9s} {'GFLOP/s':>8s}")
    P = pr.product([chain[0]])                       # P_1 = M_1, stored as the products policy stores it
    tot_ours = tot_ref = 0.0
    md = []
    for k in range(1, len(chain)):
        op = chain[k]
        P_ref = P if sp.issparse(P) else sp.csr_matrix(P)
        P_ref = P_ref.tocsr()
        M_ref = op.matrix.tocsr() if op.kind == "sparse" else op.array
        was_sparse, d_in = sp.issparse(P), pr.density(P)
        new, t_ours = timed(pr.multiply, P, op)
        ref, t_ref = timed(lambda: P_ref @ M_ref)
        tot_ours += t_ours
        tot_ref += t_ref
        m = P.shape[0]
        if op.kind == "dense" and (not was_sparse or d_in > DENSIFY_FOR_DENSE):
            kind, gf = "dense x dense (BLAS)", 2.0 * m * op.shape[0] * op.shape[1] / t_ours / 1e9
        elif op.kind == "dense":
            kind, gf = "sparse x dense (spmm)", 2.0 * P.nnz * op.shape[1] / t_ours / 1e9
        elif was_sparse and d_in <= DENSIFY_FOR_SPARSE:
            kind, gf = "sparse x sparse (spgemm)", None
        else:
            kind, gf = "dense x sparse", 2.0 * m * op.nnz / t_ours / 1e9
        kind += "->" + ("csc" if sp.issparse(new) else "dense")
        gfs = f"{gf:8.1f}" if gf is not None else f"{'':8s}"
        print(f"  {k + 1:2d} {chain.names[k]:7s} {kind:22s} {pr.density(new):8.3f} {t_ours:11.3f} {t_ref:9.3f} "
              f"{t_ref / t_ours:7.3g} {rel(new, ref):9.1e} {gfs}")
        md.append([chain.rule, f"P_{k + 1} = P_{k} M_{k + 1} ({chain.names[k]})", kind.replace(" x ", " × ").replace("->", " → "),
                   f"{pr.density(new):.3f}", f"{t_ours:.3g}", f"{t_ref:.3g}", f"{t_ref / t_ours:.3g}×",
                   f"{rel(new, ref):.0e}", "" if gf is None else f"{gf:.1f}"])
        P = new
    print(f"  sum of steps: chainlab {tot_ours:.3g} s, scipy {tot_ref:.3g} s, ratio {tot_ref / tot_ours:.3g}; "
          f"numpy dgemm in this run: {peak_gflops:.1f} GFLOP/s")
    md.append([chain.rule, "sum of the steps", "", "", f"**{tot_ours:.3g}**", f"{tot_ref:.3g}",
               f"**{tot_ref / tot_ours:.3g}×**", "", ""])
    return md


def full_sweep(chain):
    reset_peak()
    base = rss_mib()
    t = time.perf_counter()
    last = None
    for pp in chain.prefix_products():
        last = pp
    secs = time.perf_counter() - t
    peak = peak_mib() - base
    print(f"  full chain.prefix_products() sweep (renormalized, k = 1..{last.k}): {secs:.2f} s, "
          f"peak RSS growth {peak:.0f} MiB (final log_scale {last.log_scale:.3g})")
    return secs, peak


def autograd_time(R, net) -> float:
    """Seconds of R.shape[1] autograd backward passes through the float32 model, one forward, retain_graph."""
    torch.set_num_threads(_bench.threads())
    model = chainlab.models.load(net).float().eval()
    x = chainlab.data.model_input(net, chainlab.data.load_digits().x_test[:1])
    xt = torch.as_tensor(x, dtype=torch.float32).clone().requires_grad_(True)
    out = model(xt)
    Rt = torch.as_tensor(R.T, dtype=torch.float32)
    torch.autograd.grad(out, xt, Rt[:1], retain_graph=True)
    t = time.perf_counter()
    for j in range(Rt.shape[0]):
        torch.autograd.grad(out, xt, Rt[j:j + 1], retain_graph=True)
    return time.perf_counter() - t


def _autograd_child(q, R, net):
    q.put(autograd_time(R, net))


def autograd_seconds(R, net, fresh=True) -> float:
    """R.shape[1] autograd backward passes through the float32 model, timed in a fresh process (no numba
    threads around that could compete with torch's) unless ``fresh`` is False."""
    if not fresh:
        return autograd_time(R, net)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_autograd_child, args=(q, R, net))
    p.start()
    secs = q.get()
    p.join()
    return secs


def propagation(chain, model, x, n_vec, n_auto, net, fresh=True):
    rng = np.random.default_rng(2)
    R = rng.normal(size=(chain.n_output, n_vec))
    t_torch = autograd_seconds(R[:, :n_auto], net, fresh) * n_vec / n_auto
    note = "" if n_auto == n_vec else f" (extrapolated from {n_auto})"
    auto_res, t_auto = timed(chain.apply, R)
    stream_res, t_stream = timed(chain.apply, R, basis=False)
    implicit = chainlab.extract(model, x, chain.rule, materialize=False)
    imp_res, t_imp = timed(implicit.apply, R, basis=False)
    print(f"  propagate {n_vec} random vectors from the top (float64), vs torch autograd {n_vec} backward passes "
          f"(float32, one forward, {'separate process' if fresh else 'this process'}) {t_torch:.2f} s{note}:")
    for what, secs in [("chain.apply, automatic association (propagate I_10, then x R)", t_auto),
                       ("chain.apply, streamed through every sparse layer", t_stream),
                       ("implicit chain (materialize=False), batched torch conv", t_imp)]:
        print(f"    {what:62s} {secs:7.2f} s   autograd/chainlab {t_torch / secs:6.3g}")
    print(f"    rel diff auto vs streamed {rel(auto_res, stream_res):.1e}, implicit vs streamed {rel(imp_res, stream_res):.1e}")
    md = [[chain.rule, what.split(",")[0] + (f", {what.split(', ', 1)[1]}" if "," in what else ""), f"{secs:.3g}",
           f"{t_torch:.3g}", f"{t_torch / secs:.3g}×"] for what, secs in
          [("chain.apply, automatic association", t_auto), ("chain.apply, streamed through every sparse layer", t_stream),
           ("implicit chain (materialize=False)", t_imp)]]
    agree = max(rel(auto_res, stream_res), rel(imp_res, stream_res))
    grad = None
    if chain.rule == "gradient":
        m64 = model.double()
        x64 = torch.as_tensor(x, dtype=torch.float64).clone().requires_grad_(True)
        o64 = m64(x64)
        G = [torch.autograd.grad(o64, x64, torch.as_tensor(R[:, j][None]), retain_graph=True)[0].reshape(-1).numpy()
             for j in range(5)]
        grad = rel(auto_res[:, :5], np.stack(G, 1))
        print(f"  gradient: chainlab vs float64 autograd on 5 vectors, rel diff {grad:.1e}")
    model.float()
    return md, agree, grad


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="sixt-cifar", help="a shipped net (default sixt-cifar), at test digit 0")
    ap.add_argument("--rules", nargs="+", default=["zplus", "gradient"])
    ap.add_argument("--spmm-cols", type=int, nargs="+", default=[1, 32, 256])
    ap.add_argument("--repeat", type=int, default=5, help="runs per SpMM timing (the median is printed)")
    ap.add_argument("--vectors", type=int, default=1000)
    ap.add_argument("--autograd-vectors", type=int, default=1000)
    _bench.add_options(ap)
    args = ap.parse_args(argv)
    probes = {"dgemm": dict(), "bandwidth": dict()}
    if args.smoke:
        args.net, args.rules, args.spmm_cols, args.repeat = "digits-cnn", ["gradient"], [1, 4], 1
        args.vectors = args.autograd_vectors = 8
        probes = {"dgemm": dict(m=256, k=256, n=256), "bandwidth": dict(mib=8, repeat=1)}
    with _bench.printed_to(args.output):
        torch.set_num_threads(_bench.threads())
        print(f"machine: {os.cpu_count()} cores, numba threads {numba.get_num_threads()}, torch threads "
              f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f} at start (shared machine)")
        warm_up()
        gflops, _ = dgemm_gflops(**probes["dgemm"])
        bw1, bw = read_bandwidth(**probes["bandwidth"])
        print(f"numpy dgemm {gflops:.1f} GFLOP/s; memory read bandwidth: {bw1:.1f} GB/s one thread, {bw:.1f} GB/s all "
              "threads (a vector SpMM moves at least its matrix once: GB/s column = that minimum / CSR time)")
        model = chainlab.models.load(args.net)
        x = chainlab.data.model_input(args.net, chainlab.data.load_digits().x_test[:1])
        md_spmm, md_sweep, md_prop, sweeps, agree, grad = [], [], [], [], [], None
        for rule in args.rules:
            chain, t_ex = timed(chainlab.extract, model, x, rule)
            print(f"\n== {args.net}, rule {rule!r}: {len(chain)} operators, extracted in {t_ex:.1f} s")
            for (group, c), found in spmm_table(chain, args.spmm_cols, args.repeat).items():
                csc, csr, diff, gbs = ([f[i] for f in found] for i in (1, 2, 3, 4))
                md_spmm.append([rule, c, ", ".join(f[0] for f in found), spread(csc), spread(csr), f"{max(diff):.0e}",
                                spread(gbs, "")])
            md_sweep += sweep_table(chain, gflops)
            secs, peak = full_sweep(chain)
            sweeps.append(f"{rule} {secs:.3g} s (peak RSS growth {peak:.0f} MiB)")
            md, a_, g_ = propagation(chain, model, x, args.vectors, min(args.autograd_vectors, args.vectors), args.net,
                                     fresh=not args.smoke)
            md_prop += md
            agree.append(a_)
            grad = g_ if g_ is not None else grad
        cross = blas_crossover(256 if args.smoke else 2048, (0.03, 0.1, 0.3, 1.0), args.repeat)
        print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
        print(f"\ntable: SpMM M @ V per sparse layer of {args.net} (V: n_out × c; c = 1 a vector), scipy / chainlab time "
              f"(median of {args.repeat} runs each, same operands; range over the layers), M as stored (CSC) and as CSR; "
              f"rel diff: largest |chainlab − scipy| / max|scipy|; GB/s: the least bytes the product must read / "
              f"CSR time")
        _bench.table(["rule", "c", "layers", "CSC: scipy / chainlab", "CSR: scipy / chainlab", "rel diff", "GB/s"],
                     md_spmm)
        print(f"\ntable: the prefix sweep step by step, P_k = P_(k−1) M_k on the same operands: chainlab's "
              f"`linalg.multiply` (representation chosen per step) vs scipy's all-sparse sweep (csr @ csr, csr @ dense)")
        _bench.table(["rule", "step", "chainlab's product", "density", "chainlab s", "scipy s", "scipy / chainlab",
                      "rel diff", "GFLOP/s"], md_sweep)
        print(f"\ntable: dense A @ sparse S at S's density: the dense × CSC kernel (cost n·nnz(S)) vs BLAS on S made "
              f"dense (cost n³ at BLAS speed), median of {args.repeat}; `linalg.multiply` takes BLAS above density "
              f"{products.BLAS_ABOVE:g}")
        _bench.table(["n", "density", "kernel s", "BLAS s", "kernel / BLAS", "rel diff", "multiply takes"], cross)
        print(f"\ntable: {args.vectors} random vectors propagated from the top (float64) vs {args.vectors} torch "
              f"autograd backward passes through the float32 model (one forward, retain_graph"
              f"{'' if args.autograd_vectors >= args.vectors else f'; timed on {args.autograd_vectors}, scaled'})")
        _bench.table(["rule", "chainlab", "chainlab s", "autograd s", "autograd / chainlab"], md_prop)
        print(f"\nsummary: {args.net} at test digit 0, float64; numpy dgemm {gflops:.1f} GFLOP/s and memory read "
              f"bandwidth {bw1:.1f} GB/s on one thread, {bw:.1f} GB/s on all, measured in this run (a single-vector "
              f"SpMM is bound by reading its matrix once)")
        if numba.get_num_threads() > 1 and bw < bw1:
            print(f"summary: **the machine was oversubscribed**: reading memory on all {numba.get_num_threads()} threads "
                  f"was slower than on one ({bw:.1f} vs {bw1:.1f} GB/s), so the threads of the parallel kernels (and of "
                  "torch's autograd) waited for each other: their ratios in this run understate an idle machine; "
                  "OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 compares one core with one core")
        print(f"summary: full `chain.prefix_products()` sweep (renormalized): {'; '.join(sweeps)}")
        print(f"summary: the three ways of propagating agree to {max(agree):.0e} relative"
              + (f"; the gradient chain equals float64 autograd to {grad:.0e}" if grad is not None else ""))


def blas_crossover(n, densities, repeat):
    """Rows of dense A (n × n) @ sparse S (n × n, random at each density): the dense × CSC kernel against BLAS on S
    made dense (what :func:`chainlab.linalg.multiply` does above ``BLAS_ABOVE``), median seconds, results compared."""
    rng = np.random.default_rng(0)
    A = np.asfortranarray(rng.standard_normal((n, n)))
    rows = []
    for d in densities:
        S = sp.random(n, n, density=d, format="csc", random_state=1)
        got, kern = median_time(lambda: pr.dense_sparse(A, S), repeat)
        want, blas = median_time(lambda: A @ S.toarray(), repeat)
        diff = rel(got, want)
        rows.append([f"{n}²", f"{d:g}", f"{kern:.3g}", f"{blas:.3g}", f"{kern / blas:.3g}", f"{diff:.0e}",
                     "BLAS" if d > products.BLAS_ABOVE else "kernel"])
    return rows


def spread(values, unit="×") -> str:
    """'lo–hi' of positive values (one value: itself), 3 significant digits, then ``unit``."""
    lo, hi = min(values), max(values)
    return f"{lo:.3g}{unit}" if f"{lo:.3g}" == f"{hi:.3g}" else f"{lo:.3g}–{hi:.3g}{unit}"


if __name__ == "__main__":
    main()
