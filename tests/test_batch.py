"""extract_batch: the batched backward of B inputs equals the per-image chains of chainlab.extract.

Oracles: the per-image chain (itself checked against autograd and captum elsewhere) at every boundary,
for injections at the logits and at an inner boundary, on a net with conv, stride, padding, dilation,
BatchNorm, a no-bias layer and max/avg/adaptive pools, and on a residual net; autograd for signals
injected and read at pre-activation outputs; DeepLIFT's summation-to-delta at every boundary.

The per-image chains are built by the same stage operators with B = 1 and, materialized, applied as
explicit matrices (numpy/scipy products): the comparison pits the batched torch propagation against the
matrices, and the matrices are what the captum/zennit/autograd tests check.
"""
import numpy as np
import pytest
import torch

import chainlab
from chainlab.extraction.batch import batch_supported, extract_batch, forward_batch
from chainlab.nets import zoo

from conftest import conv_net, mlp

LAYER_RULES = [("gradient", {}), ("zplus", {}), ("alpha-beta", {"alpha": 2.0, "beta": 1.0}), ("lrp-0", {}),
               ("gamma", {"gamma": 0.25}), ("dtd", {"low": -3.0, "high": 3.0}), ("gradient-x-input", {})]
WHOLE = [("guided-bp", {}), ("deconv", {}), ("rectgrad", {"q": 90}), ("deeplift-rescale", {}),
         ("deeplift-revealcancel", {}), ("deeplift-ablation", {}), ("deeplift-rescale-pm", {}),
         ("deeplift-revealcancel-pm", {}), ("deeplift-ablation-pm", {}), ("contrastive-lrp", {}),
         ("contrastive-lrp-nomax", {})]


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    cn = conv_net(0)
    rn = zoo.resnet_tiny(seed=1).double().eval()
    pats = chainlab.patterns.fit(cn, torch.randn(64, 2, 9, 9, dtype=torch.float64), kind="relu")
    return {"conv": (cn, torch.randn(2, 2, 9, 9, dtype=torch.float64), pats),
            "resnet": (rn, torch.randn(2, *rn.input_shape[1:], dtype=torch.float64), None)}


def _compare(net, X, rule, opts, ks):
    try:
        chains = [chainlab.extract(net, X[b:b + 1], rule, **opts) for b in range(X.shape[0])]
    except chainlab.UnsupportedLayerError:
        with pytest.raises(chainlab.UnsupportedLayerError):
            extract_batch(net, X, rule, **opts)
        return False
    bc = extract_batch(net, X, rule, **opts)
    rng = np.random.default_rng(1)
    for k in ks:
        V = torch.as_tensor(rng.standard_normal((X.shape[0], 3) + bc.shapes[k]))
        refs = [V[b].reshape(3, -1).numpy().T for b in range(X.shape[0])]
        if bc.paired:
            refs = [np.vstack([r, r]) for r in refs]
        for j, S in bc.signals(bc.inject(V), k):
            refs = [ch.apply(r, start=j, stop=j + 1) for ch, r in zip(chains, refs)]     # one layer at a time
            if bc.space == "deeplift" and j > 0:      # a chain reads contributions at its input only
                continue
            for b, ch in enumerate(chains):
                ref = ch.contributions(refs[b]) if bc.space == "deeplift" else refs[b]
                got = S[b].reshape(3, -1).numpy().T
                assert np.abs(got - ref).max() <= 1e-10 * max(1.0, np.abs(ref).max()), (rule, k, j)
    t = bc.predicted
    E = bc.explain(t).numpy()
    for b, ch in enumerate(chains):
        ref = ch.explain(int(t[b]))[0]
        assert np.abs(E[b] - ref).max() <= 1e-10 * max(1.0, np.abs(ref).max()), rule
    return True


BOX = {"low": -3.0, "high": 3.0}
OPTIONS = {"zbox": BOX, "dtd": BOX, "lrp-cmp": BOX, "alpha-beta": {"alpha": 2.0, "beta": 1.0}, "patternnet": None,
           "patternattribution": None}
EVERY_LAYER_RULE = [(r, OPTIONS.get(r, {})) for r in chainlab.rules.rule_names()]     # every rule and composite


def test_every_rule_and_method_is_batched():
    """One path: every name extract accepts has the batched backward (smooth-gradient's per-image soft masks and
    contrastive LRP included); an unknown name has none."""
    assert all(batch_supported(r) for r in chainlab.extraction.method_names())
    assert not batch_supported("no-such-rule")
    with pytest.raises(chainlab.OptionError, match="unknown rule 'no-such-rule'"):
        extract_batch(torch.nn.Linear(2, 2), torch.zeros(1, 2), "no-such-rule")


def test_smooth_gradient_batch_with_per_unit_beta_and_sigma(nets):
    """smooth-gradient's β per unit (a mapping) and per image (sigma: β_j = 1/(σ‖w_j‖)) broadcast over the batch:
    the batched signals equal one chain per image."""
    net, X, _ = nets["conv"]
    assert _compare(net, X, "smooth-gradient", {"beta": {"conv1": np.linspace(0.5, 4.0, 4), "fc1": 2.0}}, ks=(5,))
    assert _compare(net, X, "smooth-gradient", {"sigma": 0.3, "activation": "gaussian"}, ks=(5,))


@pytest.mark.parametrize("rule,opts", EVERY_LAYER_RULE + WHOLE)
def test_batched_signals_equal_per_image_chains(nets, rule, opts):
    net, X, pats = nets["conv"]
    opts = {"patterns": pats} if opts is None else opts
    L = len(chainlab.extract(net, X[:1], "gradient"))
    assert _compare(net, X, rule, opts, ks=(L, L - 3))


@pytest.mark.parametrize("rule,opts", LAYER_RULES[:4] + WHOLE)
def test_batched_residual_net_equals_extract_where_extract_supports_it(nets, rule, opts):
    """Residual blocks: every method extract supports on a residual net (today the layer rules; the rectified
    and DeepLIFT methods once extract has them) gives the same signals batched."""
    net, X, _ = nets["resnet"]
    L = len(chainlab.extract(net, X[:1], "gradient"))
    supported = _compare(net, X, rule, opts, ks=(L, L - 2))
    assert supported or rule in dict(WHOLE)


def test_float32_batch_agrees_with_float64(nets):
    net, X, _ = nets["conv"]
    for rule in ("zplus", "guided-bp", "deeplift-revealcancel"):
        e64 = extract_batch(net, X, rule).explain([0, 1]).numpy()
        e32 = extract_batch(net, X, rule, dtype="float32").explain([0, 1]).numpy()
        assert np.abs(e32 - e64).max() <= 1e-4 * np.abs(e64).max(), rule


def test_pre_activation_injection_and_reading_are_gradients_of_the_pre_activations():
    """side="pre": a signal v injected at the pre-activation output z_k of a layer and read at z_j (before its
    ReLU) is ∂⟨v, z_k⟩/∂z_j — autograd on the model itself."""
    net = mlp(3, sizes=(7, 9, 8, 6, 4))
    X = torch.randn(2, 7, dtype=torch.float64)
    lins = [m for m in net if isinstance(m, torch.nn.Linear)]
    zs = []
    hooks = [m.register_forward_hook(lambda mod, i, o: zs.append(o)) for m in lins]
    Xg = X.clone().requires_grad_(True)
    net(Xg)
    for h in hooks:
        h.remove()
    bc = extract_batch(net, X, "gradient")
    k = 3                                               # boundary after the third Linear (+ ReLU)
    V = torch.randn(2, 1, 6, dtype=torch.float64)
    got = {j: S for j, S in bc.signals(V, k, inject="pre", measure="pre")}
    for j in (0, 1, 2):
        target = Xg if j == 0 else zs[j - 1]
        (g,) = torch.autograd.grad((zs[k - 1] * V[:, 0]).sum(), target, retain_graph=True)
        np.testing.assert_allclose(got[j][:, 0].numpy(), g.numpy(), rtol=1e-12, atol=1e-14)
    post = {j: S for j, S in bc.signals(V, k)}      # post: the ReLU mask of z_k applies to v
    (g,) = torch.autograd.grad((torch.relu(zs[k - 1]) * V[:, 0]).sum(), Xg)
    np.testing.assert_allclose(post[0][:, 0].numpy(), g.numpy(), rtol=1e-12, atol=1e-14)


def test_deeplift_contributions_sum_to_delta_at_every_boundary(nets):
    """Rescale and RevealCancel conserve: Σ contributions at every boundary = f_t(x) − f_t(0) — the ± rule with captum's
    max-pool on the conv net (an overlapping max-pool), the package's rule on the residual net (no max-pool; up to
    its 1e-7 pseudocount)."""
    for net_name, rules, rtol in (("conv", ("deeplift-rescale-pm", "deeplift-revealcancel-pm"), 1e-9),
                                  ("resnet", ("deeplift-rescale", "deeplift-revealcancel"), 1e-6)):
        net, X, _ = nets[net_name]
        for rule in rules:
            bc = extract_batch(net, X, rule)
            t = bc.predicted
            with torch.no_grad():
                delta = (net(X) - net(torch.zeros_like(X)))[np.arange(2), t].numpy()
            n = 0
            for j, S in bc.signals(bc.start(t), len(bc)):
                np.testing.assert_allclose(S.reshape(2, -1).sum(1).numpy(), delta, rtol=rtol, atol=1e-12)
                n += 1
            assert n == len(bc)


def test_shared_forward_and_refused_options(nets):
    net, X, _ = nets["conv"]
    fwd = forward_batch(net, X)
    a = extract_batch(net, X, "zplus", forward=fwd).explain([1, 1])
    b = extract_batch(net, X, "zplus").explain([1, 1])
    assert torch.equal(a, b)
    with pytest.raises(chainlab.OptionError, match="unknown option"):
        extract_batch(net, X, "zplus", alpha=2.0)
    with pytest.raises(chainlab.OptionError):
        extract_batch(net, X, "zplus", dtype="float16")


def test_readme_batch_example_runs():
    """The README's extract_batch example runs as printed (its last line asserts that the B = 1 chain of the
    batched path explains like the batch)."""
    from pathlib import Path
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("### One input or many", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md (extract_batch example)", "exec"), {"print": lambda *a: None})
