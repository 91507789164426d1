"""extract(..., materialize=False): implicit operators equal the materialized ones and autograd."""
from collections import OrderedDict

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch
import torch.nn as nn

import chainlab
from chainlab.linalg import Transposed as TransposedOperator

from conftest import conv_net, jacobian, randomize_bn



def odd_net(seed=0):
    """Leading ReLU, grouped conv, overlapping max-pool, avg-pool with ceil_mode/count_include_pad/divisor."""
    torch.manual_seed(seed)
    net = nn.Sequential(OrderedDict([
        ("relu0", nn.ReLU()),
        ("conv1", nn.Conv2d(2, 4, 3, padding=2, stride=2)),
        ("bn1", nn.BatchNorm2d(4)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(4, 6, 3, padding=1, groups=2)),
        ("relu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(3, stride=1, padding=1)),
        ("avg", nn.AvgPool2d(2, stride=2, padding=1, ceil_mode=True, count_include_pad=True)),
        ("avg2", nn.AvgPool2d(2, stride=1, divisor_override=3)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(6 * 3 * 3, 4)),
    ]))
    return randomize_bn(net, seed).double().eval()


def nets():
    g = torch.Generator().manual_seed(7)
    yield "conv_net", conv_net(2), torch.rand(1, 2, 9, 9, generator=g, dtype=torch.float64)
    yield "odd_net", odd_net(3), torch.randn(1, 2, 9, 9, generator=g, dtype=torch.float64)
    digits = chainlab.data.load_digits()
    yield "digits-cnn", chainlab.models.load("digits-cnn").double(), \
        chainlab.data.model_input("digits-cnn", digits.x_test[5:6]).double()


NETS = list(nets())


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


CASES = [(0, "zplus"), (0, "gradient"), (0, "lrp-epsilon"), (0, "gradient-x-input"), (1, "zplus"), (1, "gradient"),
         (1, "alpha-beta"), (2, "epsilon-plus"), (2, "gradient")]


@pytest.mark.parametrize("which, rule", CASES, ids=[f"{NETS[w][0]}-{r}" for w, r in CASES])
def test_implicit_equals_materialized(which, rule):
    _, net, x = NETS[which]
    ex = chainlab.extract(net, x, rule)
    im = chainlab.extract(net, x, rule, materialize=False)
    assert len(ex) == len(im) and im.layer_rules == ex.layer_rules and im.space == ex.space
    rng = np.random.default_rng(0)
    for k, (a, b) in enumerate(zip(ex, im)):
        assert b.stored() is None and b.shape == a.shape                # matrix-free (torch-backed, diagonal)
        D = a.to_dense()
        V, U = rng.normal(size=(a.shape[1], 3)), rng.normal(size=(a.shape[0], 2))
        assert rel(b.matmat(V), D @ V) < 1e-10, (rule, k, ex.names[k])
        assert rel(b.rmatmat(U), D.T @ U) < 1e-10, (rule, k, ex.names[k])
        assert rel(b.matvec(V[:, 0]), D @ V[:, 0]) < 1e-10
        assert rel(b.to_dense(), D) < 1e-10
        # counted without building; materialized row scaling (gradient-x-input) keeps explicit zeros
        assert b.nnz == b.materialize().nnz and (b.nnz == a.nnz or rule == "gradient-x-input")
        assert rel(b.T.matmat(U), D.T @ U) < 1e-10
    for target in range(2):
        assert rel(im.explain(target), ex.explain(target)) < 1e-10
    assert rel(im.product().to_dense(), ex.to_dense()) < 1e-10


@pytest.mark.parametrize("which", range(len(NETS)), ids=[n for n, _, _ in NETS])
def test_implicit_gradient_chain_is_the_autograd_jacobian(which):
    _, net, x = NETS[which]
    im = chainlab.extract(net, x, "gradient", materialize=False)
    J = jacobian(net, x)
    assert rel(im.apply(np.eye(im.n_output)), J) < 1e-10


def test_svds_on_implicit_operators_and_transposes():
    _, net, x = NETS[0]
    im = chainlab.extract(net, x, "zplus", materialize=False)
    for op in (im[1], im[1].T, im[4]):
        s_ref = np.linalg.svd(op.to_dense(), compute_uv=False)[:3]
        s = np.sort(spla.svds(spla.aslinearoperator(op), k=3, return_singular_vectors=False, random_state=0))[::-1]
        assert rel(s, s_ref) < 1e-8
    assert isinstance(im[1].T, TransposedOperator) and im[1].T.T is im[1]
    assert (im[1].T.to_sparse("csc") != im[1].to_sparse("csr").T).nnz == 0


def test_float32_bias_relevance_and_bad_options():
    _, net, x = NETS[0]
    ex = chainlab.extract(net, x, "zplus", bias="full", dtype="float32")
    im = chainlab.extract(net, x, "zplus", bias="full", dtype="float32", materialize=False)
    for a, b in zip(ex, im):
        assert b.dtype == np.float32
        V = np.random.default_rng(1).normal(size=(a.shape[1], 2)).astype(np.float32)
        assert b.matmat(V).dtype == np.float32
        assert rel(b.matmat(V), a.matmat(V)) < 1e-5
        if a.bias_relevance is not None:
            np.testing.assert_array_equal(a.bias_relevance, b.bias_relevance)
    assert im[0].astype(np.float64).matmat(np.ones((im[0].shape[1], 1))).dtype == np.float64
    with pytest.raises(ValueError, match="option materialize of rule 'zplus' must be True or False, got 'no'"):
        chainlab.extract(net, x, "zplus", materialize="no")
    with pytest.raises(ValueError, match="rows"):
        im[0].matmat(np.ones((3, 1)))


def test_sign_parts_are_made_once_and_carry_their_sign():
    """W⁺ and W⁻ of one tensor are one copy each (shared by the rules and images of a trace), equal to a fresh clamp;
    an in-place change of the source makes them anew, and a part changed in place loses its known sign.  |φ|'s
    column sums of a Linear/Conv2d term use a part as ±φ: equal to the |φ| route."""
    from chainlab.linalg import known_sign, negative_part, positive_part
    from chainlab.linalg.implicit import _abs_forward, ConvSpec
    g = torch.Generator().manual_seed(3)
    W = torch.randn(7, 5, generator=g, dtype=torch.float64)
    P, N = positive_part(W), negative_part(W)
    assert positive_part(W) is P and negative_part(W) is N
    assert torch.equal(P, W.clamp(min=0)) and torch.equal(N, W.clamp(max=0))
    assert (known_sign(P), known_sign(N), known_sign(W), known_sign(W.clamp(min=0))) == (1, -1, 0, 0)
    W.mul_(-1.0)                                  # the source changed: new parts
    P2 = positive_part(W)
    assert P2 is not P and torch.equal(P2, W.clamp(min=0))
    P2.mul_(-1.0)                                 # a part changed in place: sign unknown
    assert known_sign(P2) == 0
    u = torch.rand(1, 5, generator=g, dtype=torch.float64)
    for phi in (positive_part(W), negative_part(W)):
        assert torch.allclose(_abs_forward(phi, u, None), phi.abs() @ u.reshape(-1), rtol=1e-14, atol=0)
    K = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    U = torch.rand(1, 3, 6, 6, generator=g, dtype=torch.float64)
    conv = ConvSpec(stride=(2, 2), padding=(1, 1))
    for phi in (positive_part(K), negative_part(K)):
        want = torch.nn.functional.conv2d(U, phi.abs(), None, stride=2, padding=1)
        assert torch.allclose(_abs_forward(phi, U, conv), want, rtol=1e-14, atol=0)
