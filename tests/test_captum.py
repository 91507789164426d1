"""Oracle 3 (explanations): chainlab's LRP equals captum's LRP wherever the two conventions coincide.

Conventions (each difference is tested below, not hidden):

* BatchNorm: chainlab folds it into the preceding conv (zennit's canonizer); captum applies its
  rule to the BatchNorm layer separately.  Equal on a net with BN folded by hand.
* z⁺ (captum ``Alpha1_Beta0_Rule``) keeps the raw bias b in its denominator, chainlab (as zennit)
  uses b⁺: equal when biases are ignored on both sides (bias="none" / set_bias_to_zero=True) or
  when every bias is ≥ 0, different otherwise.
* z⁺ and γ with negative inputs: captum computes x·W⁺ (resp. x·(W+γW⁺)) for every input, chainlab
  (as zennit) pairs negative inputs with W⁻: equal for non-negative inputs.
* γ: for z_j < 0 chainlab swaps W⁺ and W⁻ (zennit's generalized γ); captum does not.  Hidden units
  with z_j < 0 carry no relevance after the ReLU, so the maps agree when the target logit is > 0.
* Max-pool: captum's ε-rule on a max-pool gives x_win/(x_win + ε) of the relevance, chainlab passes
  all of it to the winner: equal up to ε.
"""
import copy

import torch
import torch.nn as nn
from captum.attr import LRP
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule, GammaRule

import chainlab
from conftest import rel_err


class CaptumNet(nn.Module):
    """The same net for captum: BN folded by hand (or kept), nn.Flatten as torch.flatten in forward."""

    def __init__(self, seq: nn.Sequential, fold_bn: bool = True, nonneg_bias: bool = False):
        super().__init__()
        mods = [copy.deepcopy(m) for m in seq.modules() if not list(m.children())]
        layers, self.flat_at = [], None
        for m in mods:
            if isinstance(m, nn.Flatten):
                self.flat_at = len(layers)
            elif isinstance(m, nn.BatchNorm2d) and fold_bn:
                prev = layers[-1]
                s = m.weight / torch.sqrt(m.running_var + m.eps)
                prev.weight.data = prev.weight.data * s.reshape(-1, 1, 1, 1)
                b = prev.bias.data if prev.bias is not None else torch.zeros_like(s)
                prev.bias = nn.Parameter((b - m.running_mean) * s + m.bias)
            else:
                layers.append(m)
        if nonneg_bias:
            for m in layers:
                if getattr(m, "bias", None) is not None:
                    m.bias.data = m.bias.data.abs()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for i, m in enumerate(self.layers):
            if i == self.flat_at:
                x = torch.flatten(x, 1)
            x = m(x)
        return x


def captum_lrp(cnet, x, target, rule_for_linear, pool_eps=1e-9):
    for m in cnet.layers:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.rule = rule_for_linear()
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d)):
            m.rule = EpsilonRule(epsilon=pool_eps)
    return LRP(cnet).attribute(x.clone(), target=target).detach().numpy()


def ours_and_captum(net, x, rule, captum_rule, pool_eps=1e-9, **options):
    """(chainlab's map, captum's map) of the predicted class: ``extract(net, x, rule, **options)`` and captum's LRP
    with ``captum_rule()`` on every Linear/Conv2d of the hand-folded CaptumNet."""
    chain = chainlab.extract(net, x, rule, **options)
    k = chain.predicted
    return chain.explain(k), captum_lrp(CaptumNet(net).double().eval(), x, k, captum_rule, pool_eps)


def test_epsilon_equals_captum_epsilon_rule(shipped):
    name, net, x = shipped
    eps = 1e-9
    ours, theirs = ours_and_captum(net, x, "lrp-epsilon", lambda: EpsilonRule(epsilon=eps), eps, epsilon=eps,
                                   stabilizer=eps)
    assert rel_err(ours, theirs) < 1e-6, name


def test_larger_epsilon_equals_captum_epsilon_rule(shipped):
    name, net, x = shipped
    ours, theirs = ours_and_captum(net, x, "lrp-epsilon", lambda: EpsilonRule(epsilon=0.25), epsilon=0.25,
                                   stabilizer=1e-9)
    assert rel_err(ours, theirs) < 1e-6, name


def test_zplus_without_bias_equals_captum_alpha1_beta0(shipped):
    name, net, x = shipped
    assert float(x.min()) >= 0  # the digits live in [0, 1]
    ours, theirs = ours_and_captum(net, x, "zplus", lambda: Alpha1_Beta0_Rule(set_bias_to_zero=True), bias="none",
                                   stabilizer=1e-9)
    assert rel_err(ours, theirs) < 1e-6, name


def test_zplus_with_bias_differs_from_captum_only_through_negative_biases():
    net = chainlab.models.load("digits-cnn").double()
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[5:6]).double()
    chain = chainlab.extract(net, x, "zplus", bias="zennit", stabilizer=1e-9)
    k = chain.predicted
    kept = captum_lrp(CaptumNet(net).double().eval(), x, k, lambda: Alpha1_Beta0_Rule(set_bias_to_zero=False))
    assert rel_err(chain.explain(k), kept) > 1e-3          # b vs b⁺ in the denominators
    # with every bias made non-negative (b = b⁺) the conventions coincide
    cnet = CaptumNet(net, nonneg_bias=True).double().eval()
    pos_net = copy.deepcopy(net)
    for m in pos_net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
            m.bias.data = m.bias.data.abs()
    # fold BN of pos_net the same way CaptumNet did: the hand-folded conv1 bias became |folded bias|
    pos_net.conv1.weight.data = cnet.layers[0].weight.data.clone()
    pos_net.conv1.bias = nn.Parameter(cnet.layers[0].bias.data.clone())
    pos_net.bn1 = nn.Identity()
    chain_pos = chainlab.extract(pos_net, x, "zplus", bias="zennit", stabilizer=1e-9)
    theirs = captum_lrp(cnet, x, k, lambda: Alpha1_Beta0_Rule(set_bias_to_zero=False))
    assert rel_err(chain_pos.explain(k), theirs) < 1e-6


def test_zplus_with_negative_inputs_differs_from_captum():
    net = chainlab.models.load("digits-mlp").double()
    x = torch.randn(1, 64, dtype=torch.float64)
    ours, theirs = ours_and_captum(net, x, "zplus", lambda: Alpha1_Beta0_Rule(set_bias_to_zero=True), bias="none",
                                   stabilizer=1e-9)
    assert rel_err(ours, theirs) > 1e-3
    assert ours.min() >= 0  # chainlab's z⁺ map stays non-negative, captum's does not
    assert theirs.min() < 0


def test_gamma_without_bias_equals_captum_gamma_rule(shipped):
    name, net, x = shipped
    chain = chainlab.extract(net, x, "gamma", gamma=0.25, bias="none", stabilizer=1e-9)
    k = chain.predicted
    assert chain.logits[k] > 0
    theirs = captum_lrp(CaptumNet(net).double().eval(), x, k,
                        lambda: GammaRule(gamma=0.25, set_bias_to_zero=True))
    assert rel_err(chain.explain(k), theirs) < 1e-6, name


def test_batchnorm_convention_captum_rule_on_unfolded_bn_differs():
    """Folding matters for every rule but LRP-0 (which is gradient × input however an affine map is split)."""
    net = chainlab.models.load("digits-cnn").double()
    x = chainlab.data.model_input("digits-cnn", chainlab.data.load_digits().x_test[7:8]).double()
    chain = chainlab.extract(net, x, "zplus", bias="none", stabilizer=1e-9)
    k = chain.predicted
    rule = lambda: Alpha1_Beta0_Rule(set_bias_to_zero=True)  # noqa: E731
    unfolded = captum_lrp(CaptumNet(net, fold_bn=False).double().eval(), x, k, rule)
    folded = captum_lrp(CaptumNet(net, fold_bn=True).double().eval(), x, k, rule)
    assert rel_err(chain.explain(k), folded) < 1e-6
    assert rel_err(chain.explain(k), unfolded) > 1e-3
