"""Patterns (Kindermans et al. 2018): toy recovery, 1×1 conv = Linear, loop-built references, storage, errors.

Oracles: the true signal direction a_s of the signal+distractor toy; the Linear pattern of the same
weights; per-unit means and covariances computed with explicit loops over samples and patch
positions (numpy, no chainlab); the loop-unrolled conv matrix of tests/reference.py.
"""
import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab import patterns
from chainlab.errors import OptionError, PatternError
from conftest import mlp, rel_err
from reference import conv_unrolled


# ---------------------------------------------------------------------------------------------
# Kindermans' toy


@pytest.mark.parametrize("d, n_dist", [(2, 1), (6, 3)])
def test_linear_pattern_recovers_signal_direction(d, n_dist):
    """x = a_s·y + Σ a_d·ε; the filter w (wᵀa_s = 1, wᵀa_d = 0) is not a_s, the pattern is."""
    rng = np.random.default_rng(d)
    if d == 2:
        a_s, A_d = np.array([1.0, 0.0]), np.array([[1.0], [1.0]])
    else:
        a_s, A_d = rng.standard_normal(d), rng.standard_normal((d, n_dist))
    w = np.linalg.pinv(np.column_stack([a_s, A_d]))[0]
    assert abs(w @ a_s - 1) < 1e-12 and np.abs(w @ A_d).max() < 1e-12
    N = 200_000
    y = rng.standard_normal(N)
    eps = rng.standard_normal((N, n_dist))
    X = torch.from_numpy(y[:, None] * a_s[None, :] + eps @ A_d.T)
    net = nn.Sequential(nn.Linear(d, 1, bias=False)).double().eval()
    net[0].weight.data = torch.from_numpy(w[None, :].copy())
    P = patterns.fit(net, X, kind="linear", batch_size=25_000)
    a = P.get("linear", "0")[0]
    assert P.n_samples == N
    assert np.abs(a - a_s).max() < 1e-2
    assert np.abs(w - a_s).max() > 0.3
    # PatternNet's explanation of this one-layer net is the pattern itself
    ch = chainlab.extract(net, X[:1], "patternnet", patterns=P, pattern_type="linear")
    assert np.allclose(ch.explain(0).reshape(-1), a)


# ---------------------------------------------------------------------------------------------
# 1×1 conv = Linear


def test_conv1x1_pattern_equals_linear_pattern():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 2)).double().eval()
    lin = nn.Sequential(nn.Linear(3, 4)).double().eval()
    lin[0].weight.data = conv[0].weight.data.reshape(4, 3).clone()
    lin[0].bias.data = conv[0].bias.data.clone()
    imgs = torch.randn(60, 3, 5, 5, dtype=torch.float64) + 0.3
    Pc = patterns.fit(conv, imgs, kind="both", batch_size=16)
    Pl = patterns.fit(lin, imgs.permute(0, 2, 3, 1).reshape(-1, 3), kind="both", batch_size=100)
    for kind in ("linear", "relu"):
        ac = Pc.get(kind, "0").reshape(4, 3)
        al = Pl.get(kind, "0")
        assert np.abs(al).max() > 0.1
        assert np.abs(ac - al).max() < 1e-10 * np.abs(al).max()


# ---------------------------------------------------------------------------------------------
# streaming fit = loop-built reference


def _small_conv_net():
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(27, 4), nn.ReLU(), nn.Linear(4, 2)).double().eval()


def _loop_patterns(X, Y, W, kind):
    """a_j from explicit per-unit loops over the sample list (numpy; means over the selected samples)."""
    n_out, n_in = W.shape
    A = np.zeros((n_out, n_in))
    for j in range(n_out):
        sel = [s for s in range(X.shape[0]) if kind == "linear" or Y[s, j] > 0]
        if len(sel) < 2:
            continue
        xs, ys = X[sel], Y[sel, j]
        cov = np.zeros(n_in)
        for i in range(n_in):
            cov[i] = np.mean(xs[:, i] * ys) - np.mean(xs[:, i]) * np.mean(ys)
        A[j] = cov / sum(W[j, i] * cov[i] for i in range(n_in))
    return A


def _patches_by_loops(h, W_shape, stride, pad):
    """Every receptive-field patch of h (N, C, H, W) in (C, kh, kw) order, zero padding, by loops."""
    N, C, H, Wd = h.shape
    _, _, KH, KW = W_shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (Wd + 2 * pad - KW) // stride + 1
    rows = []
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                p = []
                for c in range(C):
                    for kh in range(KH):
                        for kw in range(KW):
                            ih, iw = oh * stride - pad + kh, ow * stride - pad + kw
                            p.append(h[n, c, ih, iw] if 0 <= ih < H and 0 <= iw < Wd else 0.0)
                rows.append(p)
    return np.array(rows)


def test_streaming_fit_equals_loop_reference():
    net = _small_conv_net()
    imgs = torch.randn(30, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    P = patterns.fit(net, imgs, kind="both", batch_size=7)
    conv, fc1 = net[0], net[3]
    with torch.no_grad():
        zc = conv(imgs)
        h1 = torch.relu(zc).flatten(1)
        z1 = fc1(h1)
    Xc = _patches_by_loops(imgs.numpy(), conv.weight.shape, 2, 1)
    Wc = conv.weight.detach().numpy().reshape(3, -1)
    Yc = Xc @ Wc.T + conv.bias.detach().numpy()
    assert np.allclose(Yc, zc.permute(0, 2, 3, 1).reshape(-1, 3).numpy())   # the patches are right
    for kind in ("linear", "relu"):
        ref_c = _loop_patterns(Xc, Yc, Wc, kind)
        assert rel_err(P.get(kind, "0").reshape(3, -1), ref_c) < 1e-9
        ref_f = _loop_patterns(h1.numpy(), z1.numpy(), fc1.weight.detach().numpy(), kind)
        assert rel_err(P.get(kind, "3"), ref_f) < 1e-9


# ---------------------------------------------------------------------------------------------
# explicit matrices = loop-built references


@pytest.mark.parametrize("rule", ["patternnet", "patternattribution"])
def test_pattern_matrices_equal_loop_built(rule):
    net = _small_conv_net()
    imgs = torch.randn(40, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    P = patterns.fit(net, imgs, kind="both", batch_size=16)
    x = imgs[:1]
    for kind in ("relu", "linear"):
        ch = chainlab.extract(net, x, rule, patterns=P, pattern_type=kind)
        with torch.no_grad():
            z0 = net[0](x).reshape(-1).numpy()
            z1 = net[3](torch.relu(net[0](x)).flatten(1)).reshape(-1).numpy()
        layers = [(net[0], z0, True), (net[3], z1, True), (net[5], None, False)]
        dense = []
        for idx, (mod, z, relu) in zip(("0", "3", "5"), layers):
            A = P.get(kind, idx)
            K = A if rule == "patternnet" else mod.weight.detach().numpy() * A
            if isinstance(mod, nn.Conv2d):
                Wm, _ = conv_unrolled(K, (2, 6, 6), stride=(2, 2), padding=(1, 1))
            else:
                Wm = K
            mask = (z > 0).astype(float) if relu else np.ones(Wm.shape[0])
            M = np.zeros((Wm.shape[1], Wm.shape[0]))
            for i in range(Wm.shape[1]):
                for j in range(Wm.shape[0]):
                    M[i, j] = Wm[j, i] * mask[j]
            dense.append(M)
        for op, M in zip(ch, dense):
            assert np.abs(op.to_dense() - M).max() < 1e-12
        assert np.allclose(ch.explain(1).reshape(-1), dense[0] @ dense[1] @ dense[2] @ np.eye(2)[1])
        assert ch.space == "gradient"


# ---------------------------------------------------------------------------------------------
# storage and quantization


def test_save_load_roundtrip_and_quantization(tmp_path):
    net = chainlab.models.load("digits-mlp")
    d = chainlab.data.load_digits()
    P = patterns.fit(net, chainlab.data.model_input("digits-mlp", d.x_train[:500]), kind="both")
    for name in ("p.npz", "p.h5"):
        P.save(tmp_path / name)
        Q = patterns.load(tmp_path / name)
        assert Q.net_fingerprint == P.net_fingerprint and Q.layer_shapes == P.layer_shapes
        for kind in P.kinds:
            for layer in P.layer_shapes:
                assert np.array_equal(Q.get(kind, layer), P.get(kind, layer))
    # int8 with per-row scale: entry error ≤ scale/2 = max|row|/254; effect on the explanations
    P.save(tmp_path / "q.npz", quantize_above=0)
    Q = patterns.load(tmp_path / "q.npz")
    for layer in P.layer_shapes:
        a, b = P.get("relu", layer), Q.get("relu", layer)
        bound = np.abs(a).max(axis=1, keepdims=True) / 254 * (1 + 1e-6) + 1e-300
        assert np.all(np.abs(a - b) <= bound)
    x = chainlab.data.model_input("digits-mlp", d.x_test[:1])
    for rule, tol in (("patternnet", 0.05), ("patternattribution", 0.05)):
        e1 = chainlab.extract(net, x, rule, patterns=P).explain()
        e2 = chainlab.extract(net, x, rule, patterns=Q).explain()
        assert 0 < rel_err(e2, e1) < tol, (rule, rel_err(e2, e1))


def test_shipped_patterns_fit_the_shipped_nets(shipped):
    name, net, x = shipped
    path = chainlab.models.data_dir() / f"patterns-{name}.npz"
    P = patterns.load(path)
    P.check(chainlab.trace.trace(net))
    fitted_on = {"digits-mlp": 1437, "digits-cnn": 1437, "sixt-cifar": 5000}    # data/README.md: the fitting sets
    assert P.net_name == name and P.n_samples == fitted_on[name] and "relu" in P.kinds
    if name != "sixt-cifar":
        ch = chainlab.extract(net, x, "patternattribution")          # shipped patterns found by model name
        assert ch.explain().shape == tuple(x.shape) and np.isfinite(ch.explain()).all()


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_patterns(tmp_path):
    x = torch.randn(1, 7, dtype=torch.float64)
    P = patterns.fit(mlp(0), torch.randn(50, 7, dtype=torch.float64), kind="relu")
    with pytest.raises(PatternError, match=r"layer '0' has weight shape \(9, 7\), the patterns \(5, 7\)"):
        other = mlp(0, sizes=(7, 5, 8, 6, 4))
        chainlab.extract(mlp(0, sizes=(7, 9, 8, 6, 4)), x, "patternnet",
                         patterns=patterns.fit(other, torch.randn(20, 7, dtype=torch.float64)))
    with pytest.raises(PatternError, match=r"layers without patterns: \[.8.\]"):
        chainlab.extract(mlp(0, sizes=(7, 9, 8, 6, 4, 3)), x, "patternnet", patterns=P)
    with pytest.raises(PatternError, match="fingerprint"):
        chainlab.extract(mlp(1), x, "patternnet", patterns=P)
    with pytest.raises(OptionError, match="option pattern_type of rule 'patternattribution' must be one of relu, linear; got 'quadratic'"):
        chainlab.extract(mlp(0), x, "patternattribution", patterns=P, pattern_type="quadratic")
    with pytest.raises(PatternError, match="hold the type.*relu, not 'linear'"):
        chainlab.extract(mlp(0), x, "patternnet", patterns=P, pattern_type="linear")
    with pytest.raises(PatternError, match="unknown pattern type 'cubic'"):
        patterns.fit(mlp(0), torch.randn(5, 7), kind="cubic")
    with pytest.raises(ValueError, match="unknown option.*'q'.*patternnet"):
        chainlab.extract(mlp(0), x, "patternnet", patterns=P, q=3)
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(PatternError, match="foreign.npz is not a chainlab pattern file"):
        chainlab.extract(mlp(0), x, "patternnet", patterns=tmp_path / "foreign.npz")
    with pytest.raises(PatternError, match="not a shipped net"):
        chainlab.extract(mlp(0), x, "patternnet")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        patterns.load(tmp_path / "nope.npz")
