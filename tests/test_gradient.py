"""Oracle 1 and 2: the gradient chain is the autograd Jacobian; LRP-0 is gradient × input."""
import numpy as np
import pytest
import torch

import chainlab
from conftest import conv_net, jacobian, mlp, rel_err


def test_gradient_chain_equals_autograd_jacobian_on_shipped_nets(shipped):
    name, net, x = shipped
    chain = chainlab.extract(net, x, "gradient")
    assert rel_err(chain.to_dense(), jacobian(net, x)) < 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_chain_equals_autograd_jacobian_on_random_conv_nets(seed):
    net = conv_net(seed)
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64)  # negative inputs too
    chain = chainlab.extract(net, x, "gradient")
    assert [op.kind for op in chain] == ["sparse"] * 6 + ["dense"] * 2
    assert rel_err(chain.to_dense(), jacobian(net, x)) < 1e-10


def test_gradient_explain_is_the_gradient_of_the_predicted_logit():
    net = mlp(3)
    x = torch.randn(1, 7, dtype=torch.float64, requires_grad=True)
    chain = chainlab.extract(net, x.detach(), "gradient")
    k = int(net(x).argmax())
    net(x)[0, k].backward()
    np.testing.assert_allclose(chain.explain(), x.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert chain.explain().shape == (1, 7)


def test_gradient_x_input_is_input_times_jacobian(shipped):
    name, net, x = shipped
    chain = chainlab.extract(net, x, "gradient-x-input")
    J = jacobian(net, x)
    assert rel_err(chain.to_dense(), x.reshape(-1, 1).numpy() * J) < 1e-10
    k = int(np.argmax(chain.logits))
    assert rel_err(chain.explain(k).reshape(-1), x.reshape(-1).numpy() * J[:, k]) < 1e-10


@pytest.mark.parametrize("stab", [1e-6, 1e-9, 1e-12])
def test_lrp0_is_gradient_times_input_up_to_the_stabilizer(shipped, stab):
    """LRP-0 = x ⊙ ∇f_k exactly when ε → 0; the error must shrink in proportion to the stabilizer."""
    name, net, x = shipped
    chain = chainlab.extract(net, x, "lrp-0", stabilizer=stab)
    k = chain.predicted
    gxi = x.reshape(-1).numpy() * jacobian(net, x)[:, k]
    err = rel_err(chain.explain(k).reshape(-1), gxi)
    assert err < 1e5 * stab, (name, stab, err)


def test_lrp0_is_gradient_times_input_on_random_conv_net_with_negative_inputs():
    net = conv_net(4)
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    chain = chainlab.extract(net, x, "lrp-0", stabilizer=1e-13)
    for k in range(5):
        gxi = x.reshape(-1).numpy() * jacobian(net, x)[:, k]
        assert rel_err(chain.explain(k).reshape(-1), gxi) < 1e-6
    # the whole product: column k of diag(x) J scaled by f_k
    P = chain.to_dense()
    ref = x.reshape(-1, 1).numpy() * jacobian(net, x) / chain.logits[None, :]
    assert rel_err(P, ref) < 1e-6


def test_lrp0_relevance_sums_to_the_logit_minus_bias_shares_with_bias_full():
    """Conservation with bias="full": input relevance + relevance absorbed by all biases = f_k(x)."""
    net = conv_net(5)
    x = torch.rand(1, 2, 9, 9, dtype=torch.float64)
    chain = chainlab.extract(net, x, "lrp-0", bias="full", stabilizer=1e-13)
    k = chain.predicted
    r = chain.start_vector(k)
    absorbed = 0.0
    for i in reversed(range(len(chain))):
        if chain[i].bias_relevance is not None:
            absorbed += float(chain[i].bias_relevance @ r)
        r = chain[i] @ r
    assert abs(r.sum() + absorbed - chain.logits[k]) < 1e-7 * abs(chain.logits[k])
