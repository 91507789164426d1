"""Benchmark: building each layer operator of sixt-cifar vs the obvious alternatives, in one run.

For every layer (stage) of the shipped sixt-cifar net (``--net``) at one test digit:

* chainlab: time to build the layer's operator for the rule (numba kernel for convs, straight from
  the kernel weights) and the peak extra memory of doing so;
* jacrev: ``torch.func.jacrev`` of the same layer function (dense float64 Jacobian), when the dense
  Jacobian fits the memory budget — otherwise the script says so; its ``chunk_size`` keeps the vmapped
  backward passes within the budget as well (unchunked, jacrev of sixt-cifar's conv1 peaks at ~18 GB);
* straightforward: numpy index arithmetic for all (row, column, value) triples, then scipy
  COO → CSR (the build one writes first), for the conv, linear and max-pool layers.

Each measurement runs in a spawned child so that its peak RSS is its own.  Run:

    python scripts/bench_extract.py [--rule gradient] [--jacrev-budget-gib 2] [--repeat 3] [--output FILE]

``--smoke``: digits-cnn, measured in this process (no children, so the MiB columns are not per build).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np
import scipy.sparse as sp
import torch

import _bench
import chainlab
from _memory import peak_mib, reset_peak, rss_mib
from chainlab.extraction.layers import fixed_operator, rule_operator
from chainlab.rules import LayerContext, make_rule
from chainlab.trace import trace


def _child(q, what, net, rule_name, i, repeat):
    q.put(measure(what, net, rule_name, i, repeat))


def measure(what, net, rule_name, i, repeat):
    """(seconds, peak RSS growth in MiB, extra) of one build."""
    torch.set_num_threads(_bench.threads())
    tnet, recs, rule = setup(net, rule_name)
    if what == "chainlab":
        chainlab_build(tnet, recs, rule, i, 1)  # load the compiled kernels before measuring
    reset_peak()
    base = rss_mib()
    try:
        if what == "chainlab":
            secs, extra = chainlab_build(tnet, recs, rule, i, repeat)
        elif what == "jacrev":
            secs, extra = jacrev_build(tnet, recs, i, repeat)
        else:
            secs, extra = straightforward_build(tnet, recs, i)
        return secs, max(peak_mib() - base, 0.0), extra
    except Exception as exc:  # noqa: BLE001
        return float("nan"), float("nan"), f"failed: {exc}"


def in_child(what, net, rule_name, i, repeat=1, fresh=True):
    """Measure one build in a fresh (spawned) process unless ``fresh`` is False: (seconds, peak RSS growth in
    MiB, extra)."""
    if not fresh:
        return measure(what, net, rule_name, i, repeat)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, what, net, rule_name, i, repeat))
    p.start()
    p.join()
    if p.exitcode != 0:
        return float("nan"), float("nan"), f"child exited with {p.exitcode}"
    return q.get()


def setup(net_name, rule_name):
    net = chainlab.models.load(net_name)
    x = chainlab.data.model_input(net_name, chainlab.data.load_digits().x_test[:1]).double()
    tnet = trace(net)
    recs = tnet.forward(tnet.prepare_input(x))
    rule, _ = make_rule(rule_name, {})
    return tnet, recs, rule


def chainlab_build(tnet, recs, rule, i, repeat):
    st, rec = tnet.stages[i], recs[i]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        if st.is_parametric:
            op = rule_operator(rule, LayerContext(st, rec, i, i == 0), np.float64, True)
        else:
            op = fixed_operator(st, rec, rule.space, "proportional", 1e-6, np.float64, True)
        best = min(best, time.perf_counter() - t0)
    return best, op.nnz


def layer_fn(st):
    def f(h):
        return st.forward(h)[0]
    return (lambda h: torch.relu(f(h))) if st.relu else f


def jacrev_chunk(n_in: int, n_out: int, budget_gib: float) -> int:
    """Output rows per vmapped chunk of jacrev: the chunk's basis vectors, input gradients and layer activations
    (≈ 4 float64 copies of chunk × (n_in + n_out)) within half the budget (the Jacobian takes the rest)."""
    return int(max(1, min(n_out, budget_gib * 2**30 / 2 / (4 * 8 * (n_in + n_out)))))


def jacrev_build(tnet, recs, i, chunk):
    st, rec = tnet.stages[i], recs[i]
    f = layer_fn(st)
    h = rec.x.clone()
    t0 = time.perf_counter()
    J = torch.func.jacrev(f, chunk_size=chunk)(h)
    secs = time.perf_counter() - t0
    return secs, int(J.numel())


def straightforward_build(tnet, recs, i):
    """Gradient matrix of stage i from numpy index arithmetic → COO → CSR (the obvious first version)."""
    st, rec = tnet.stages[i], recs[i]
    t0 = time.perf_counter()
    z = rec.z.reshape(-1).numpy()
    mask = (z > 0).astype(np.float64) if st.relu else np.ones_like(z)
    if st.kind == "conv2d":
        C, H, W = rec.in_shape
        Co, OH, OW = rec.out_shape
        KH, KW = st.weight.shape[2:]
        (sh, sw), (ph, pw), (dh, dw) = st.conv.stride, st.conv.padding, st.conv.dilation
        co, ci, kh, kw, oh, ow = np.meshgrid(np.arange(Co), np.arange(C), np.arange(KH), np.arange(KW),
                                             np.arange(OH), np.arange(OW), indexing="ij")
        ih, iw = oh * sh - ph + kh * dh, ow * sw - pw + kw * dw
        ok = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        rows = ((ci * H + ih) * W + iw)[ok]
        cols = ((co * OH + oh) * OW + ow)[ok]
        vals = st.weight.numpy()[co[ok], ci[ok], kh[ok], kw[ok]] * mask[cols]
        M = sp.coo_matrix((vals, (rows, cols)), shape=(C * H * W, Co * OH * OW)).tocsr()
    elif st.kind == "linear":
        M = sp.coo_matrix(st.weight.numpy().T * mask[None, :]).tocsr()
    elif st.kind == "maxpool2d":  # winner-take-all from torch's argmax
        C, H, W = rec.in_shape
        arg = rec.argmax.reshape(C, -1).numpy()
        rows = (arg + np.arange(C)[:, None] * H * W).ravel()
        cols = np.arange(rows.size)
        M = sp.coo_matrix((mask, (rows, cols)), shape=(C * H * W, rows.size)).tocsr()
    else:
        return float("nan"), f"no straightforward build of {st.kind}"
    return time.perf_counter() - t0, int(M.nnz)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="sixt-cifar", help="a shipped net (default sixt-cifar), at test digit 0")
    ap.add_argument("--rule", default="gradient", help="rule of the chainlab build (default gradient)")
    ap.add_argument("--jacrev-budget-gib", type=float, default=2.0,
                    help="run jacrev only where the dense float64 Jacobian is below this size")
    ap.add_argument("--repeat", type=int, default=3, help="chainlab: best of this many builds")
    _bench.add_options(ap)
    args = ap.parse_args(argv)
    if args.smoke:
        args.net, args.repeat = "digits-cnn", 1
    with _bench.printed_to(args.output):
        run(args)


def run(args):
    torch.set_num_threads(_bench.threads())
    tnet, recs, rule = setup(args.net, args.rule)
    fresh = not args.smoke

    print(f"{args.net}, rule {args.rule!r}, one test digit, {torch.get_num_threads()} threads, float64")
    head = (f"{'layer':<7}{'shape':>17}{'nnz':>12} | {'chainlab s':>10}{'MiB':>7} | {'jacrev s':>9}{'MiB':>8}"
            f"{'ratio':>9} | {'straightfwd s':>13}{'MiB':>7}{'ratio':>9}")
    print(head, flush=True)
    print("-" * len(head))
    tot_c = tot_s = 0.0
    notes, md = [], []
    for i, (st, rec) in enumerate(zip(tnet.stages, recs)):
        n_in, n_out = int(np.prod(rec.in_shape)), int(np.prod(rec.out_shape))
        c_s, c_mb, nnz = in_child("chainlab", args.net, args.rule, i, args.repeat, fresh)
        dense_gib = n_in * n_out * 8 / 2**30
        if dense_gib <= args.jacrev_budget_gib:
            chunk = jacrev_chunk(n_in, n_out, args.jacrev_budget_gib)
            j_s, j_mb, j_what = in_child("jacrev", args.net, args.rule, i, chunk, fresh)
            jac = f"{j_s:9.3f}{j_mb:8.0f} {j_s / c_s:7.3g}×"
            md_jac = [f"{j_s:.3g}", f"{j_mb:.0f}", f"{j_s / c_s:.3g}×"]
            if j_s != j_s:                                         # NaN: failed
                notes.append(f"{st.name}: jacrev {j_what}")
                md_jac = [f"failed ({j_what})", "—", "—"]
            elif chunk < n_out:
                notes.append(f"{st.name}: jacrev in chunks of {chunk} of the {n_out} outputs (memory budget)")
        else:
            jac = f"{'—':>9}{'—':>8}{'—':>9}"
            md_jac = [f"not run ({dense_gib:.1f} GiB dense)", "—", "—"]
            notes.append(f"{st.name}: jacrev would need a dense {n_out}×{n_in} float64 Jacobian = {dense_gib:.1f} GiB "
                         f"(budget {args.jacrev_budget_gib:g} GiB): not run")
        s_s, s_mb, s_what = in_child("straightforward", args.net, args.rule, i, 1, fresh)
        if s_s == s_s:                                             # not NaN: built
            tot_c += c_s
            tot_s += s_s
            straight = f"{s_s:13.3f}{s_mb:7.0f} {s_s / c_s:7.3g}×"
            md_straight = [f"{s_s:.3g}", f"{s_s / c_s:.3g}×"]
        else:
            straight = f"{'—':>13}{'—':>7}{'—':>9}"
            md_straight = ["—", "—"]
            notes.append(f"{st.name}: {s_what}")
        md.append([st.name, f"{n_in}×{n_out}", f"{nnz:,}", f"{c_s:.3g}", f"{c_mb:.0f}", *md_jac, *md_straight])
        print(f"{st.name:<7}{f'{n_in}×{n_out}':>17}{nnz:>12,} | {c_s:10.3f}{c_mb:7.0f} | {jac} | {straight}",
              flush=True)
    print("-" * len(head))
    print(f"{'all built both ways':<36} | {tot_c:10.3f}{'':7} | {'':26} | {tot_s:13.3f}{'':7} {tot_s / tot_c:7.3g}×")
    for n in notes:
        print("note:", n)
    print("(chainlab: best of", args.repeat, "builds; MiB: peak RSS growth of the child process doing the build;"
          " the straightforward build is the gradient matrix whatever --rule says)")
    print()
    _bench.table(["layer", "n_in×n_out", "stored entries", "chainlab s", "MiB", "jacrev s", "jacrev MiB",
                  "jacrev / chainlab", "straightforward s", "straightforward / chainlab"], md)
    print(f"\nsummary: {args.net} at one test digit, rule {args.rule}, float64: building every operator the "
          f"straightforward way can build took chainlab {tot_c:.3g} s against {tot_s:.3g} s for the straightforward build "
          f"(numpy index arithmetic + scipy COO→CSR) in the same run ({tot_s / tot_c:.3g}×); chainlab: best of "
          f"{args.repeat} builds, {'each build in a fresh process' if fresh else 'all in this process (smoke)'} (MiB: "
          f"its peak RSS growth); torch.func.jacrev of the same "
          f"layer only where its dense float64 Jacobian is ≤ {args.jacrev_budget_gib:g} GiB (vmapped over chunks of outputs "
          f"so that its peak stays within a few times that budget)")


if __name__ == "__main__":
    main()
