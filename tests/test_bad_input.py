"""Bad input gives a clear error naming what is wrong; the stabilizer keeps every matrix finite."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn as nn

import chainlab
from chainlab import UnsupportedLayerError
from conftest import conv_net, mlp


def test_unsupported_module_names_path_type_and_supported_layers():
    net = nn.Sequential(OrderedDict([("fc", nn.Linear(4, 4)),
                                     ("block", nn.Sequential(nn.ReLU(), nn.Linear(4, 3), nn.Tanh())),
                                     ("out", nn.Linear(3, 2))]))
    with pytest.raises(UnsupportedLayerError) as e:
        chainlab.extract(net, torch.rand(1, 4), "gradient")
    msg = str(e.value)
    assert "block.2" in msg and "Tanh" in msg and "Conv2d" in msg and "MaxPool2d" in msg


def test_branch_that_is_not_a_residual_sum_is_refused_with_the_node_named():
    # residual sums x + f(x) are supported since issue 8 (chainlab.residual); a product of branches is not
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(x * torch.relu(self.fc(x)))

    with pytest.raises(UnsupportedLayerError, match="'mul'"):
        chainlab.extract(Gate().eval(), torch.rand(1, 4), "gradient")


def test_plain_chain_module_with_functional_relu_and_view_is_accepted():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            x = x.view(x.size(0), -1)
            return self.fc(x)

    net = Net().double()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    chain = chainlab.extract(net, x, "gradient")
    assert chain.names == ["conv", "fc"]
    J = torch.autograd.functional.jacobian(lambda v: net(v).reshape(-1), x).reshape(3, -1).T
    np.testing.assert_allclose(chain.to_dense(), J.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(1, 3, 9, 9), (1, 1, 2, 9, 9), (1, 2, 2, 2), (9, 9)])
def test_wrong_input_shape_says_what_is_expected(shape):
    with pytest.raises(ValueError, match=r"expect"):
        chainlab.extract(conv_net(), torch.rand(shape, dtype=torch.float64), "gradient")


def test_wrong_shape_for_shipped_net_names_the_expected_shape():
    net = chainlab.models.load("sixt-cifar")
    with pytest.raises(ValueError, match=r"\(1, 3, 32, 32\)"):
        chainlab.extract(net, torch.rand(1, 3, 16, 16), "zplus")


def test_batch_of_two_is_refused():
    with pytest.raises(ValueError, match="batch dimension 1"):
        chainlab.extract(mlp(), torch.rand(2, 7, dtype=torch.float64), "gradient")


def test_unbatched_input_gets_the_batch_dimension():
    net = conv_net()
    x = torch.rand(2, 9, 9, dtype=torch.float64)
    chain = chainlab.extract(net, x, "gradient")
    assert chain.input_shape == (1, 2, 9, 9)
    assert chain.explain().shape == (1, 2, 9, 9)
    assert chainlab.extract(mlp(), np.random.rand(7), "zplus").input_shape == (1, 7)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_input_is_refused(bad):
    x = torch.rand(1, 7, dtype=torch.float64)
    x[0, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        chainlab.extract(mlp(), x, "gradient")


def test_alpha_beta_must_differ_by_one():
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        chainlab.extract(mlp(), torch.rand(1, 7, dtype=torch.float64), "alpha-beta", alpha=3, beta=1)


def test_zero_denominators_give_the_stabilizer_never_nan():
    net = conv_net(1)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.BatchNorm2d):
            m.bias.data.zero_()
            m.running_mean.zero_()
    x = torch.zeros(1, 2, 9, 9, dtype=torch.float64)  # every pre-activation is exactly 0
    for rule, opts in [("lrp-0", {}), ("zplus", {}), ("alpha-beta", {}), ("gamma", {}), ("lrp-epsilon", {}),
                       ("zbox", {"low": 0.0, "high": 0.0}), ("gradient", {})]:
        chain = chainlab.extract(net, x, rule, **opts)
        for op in chain:
            M = op.to_dense()
            assert np.all(np.isfinite(M)), (rule, op)
        assert np.all(np.isfinite(chain.explain()))


@pytest.mark.parametrize("layers", [
    [nn.BatchNorm1d(4), nn.Linear(4, 2)],
    [nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)],
])
def test_batchnorm_without_preceding_linear_is_refused(layers):
    with pytest.raises(UnsupportedLayerError, match="BatchNorm '.*' .*directly preceding Linear or Conv2d"):
        chainlab.extract(nn.Sequential(*layers).eval(), torch.rand(1, 4), "gradient")


def test_training_mode_is_extracted_in_eval_mode_and_restored_with_a_warning():
    net = conv_net(2).train()
    x = torch.rand(1, 2, 9, 9, dtype=torch.float64)
    with pytest.warns(UserWarning, match="training mode"):
        chain = chainlab.extract(net, x, "gradient")
    assert net.training and all(m.training for m in net.modules())
    ref = chainlab.extract(net.eval(), x, "gradient")
    np.testing.assert_array_equal(chain.to_dense(), ref.to_dense())


def test_unknown_rule_and_unknown_option_are_named():
    x = torch.rand(1, 7, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown rule 'zplsu'.*zplus"):
        chainlab.extract(mlp(), x, "zplsu")
    with pytest.raises(ValueError, match="unknown option.*'alhpa'.*alpha"):
        chainlab.extract(mlp(), x, "alpha-beta", alhpa=2)
    with pytest.raises(ValueError, match="option bias of rule 'zplus' must be one of"):
        chainlab.extract(mlp(), x, "zplus", bias="some")
    with pytest.raises(ValueError, match="zbox' needs low= and high="):
        chainlab.extract(mlp(), x, "zbox")


def test_composite_mixing_spaces_is_refused():
    with pytest.raises(ValueError, match="mixes gradient-space and relevance-space"):
        chainlab.extract(mlp(), torch.rand(1, 7, dtype=torch.float64), {0: "gradient", "default": "zplus"})


def test_apply_with_wrong_rows_names_the_operator():
    chain = chainlab.extract(mlp(), torch.rand(1, 7, dtype=torch.float64), "zplus")
    with pytest.raises(ValueError, match=r"needs R with 8 rows .*operator 1"):
        chain.apply(np.ones(3), 0, 2)
    np.testing.assert_allclose(chain.apply(np.ones(8), 0, 2), chain[0] @ (chain[1] @ np.ones(8)))


# -- issue 14's smaller defects ------------------------------------------------------------------
def test_recurrent_layer_is_named_as_the_module_not_getitem():
    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(4, 3, batch_first=True)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])

    with pytest.raises(UnsupportedLayerError, match=r"module 'lstm' of type LSTM is not supported") as e:
        chainlab.extract(Recurrent().eval(), torch.rand(1, 5, 4), "gradient")
    assert "getitem" not in str(e.value)


def test_explain_targets_must_be_integer_logit_indices():
    chain = chainlab.extract(mlp(), torch.rand(1, 7, dtype=torch.float64), "gradient")
    for bad in (1.99, "3", True, 2.0, -1, chain.n_output):
        with pytest.raises(chainlab.InputError, match="target"):
            chain.explain(bad)
    assert np.array_equal(chain.explain(np.int64(1)), chain.explain(1))


def test_extract_of_something_that_is_not_a_module():
    for bad in (None, "digits-mlp", np.eye(3)):
        with pytest.raises(chainlab.InputError, match="model must be a torch.nn.Module"):
            chainlab.extract(bad, torch.rand(1, 7), "gradient")


def test_half_precision_model_is_refused_with_the_conversion_to_use():
    net = mlp().half()
    with pytest.raises(chainlab.InputError, match=r"float16.*float32 or float64.*model\.float\(\)"):
        chainlab.extract(net, torch.rand(1, 7).half(), "gradient")
