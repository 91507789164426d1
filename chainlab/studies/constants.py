"""Empirical componentwise constants of a net over an input set (Binder et al.): test images × perturbations.

For every input x of the set — each test image x_i and ``copies`` perturbed copies of it (:func:`.averages.perturb`)
— and every rule, the chain is extracted and :func:`chainlab.measures.constants` gives

    C(x) = ‖R(x)‖_∞ / ‖r_L(x)‖₁      (sup_i |R_i| / |f_k(x)| for relevance rules, sup_i |∂f_k/∂x_i| for the gradient)

for the logit k predicted at the unperturbed image, beside the a-priori constant Π_l c_l and Π_l ‖W_l‖_∞.  The
empirical constant of the net and rule is C_emp = sup over the input set; tightness = C_emp / Π c_l.  With
``norms`` the first ``norms`` images also get the per-layer ‖M_l‖₁ and their product (the matrices are
multiplied out one at a time; implicit chains stay implicit otherwise).

Rules are given as names or (name, options) pairs; each record's ``rule`` is :func:`rule_label` (so LRP-ε at
different ε are different rules), ``rule_name`` the extraction rule.  Records: ``measure="constants"``,
extras ``copy`` (0 = the image itself), ``perturbation``, ``level``.
"""
from __future__ import annotations

import numpy as np

from ..extraction import extract as _extract
from ..measures import constants
from .averages import perturb

__all__ = ["empirical_constants", "rule_label", "rule_spec"]


def rule_spec(rule) -> tuple[str, dict]:
    """(name, options) of a rule given as a name or a (name, options) pair."""
    return (rule, {}) if isinstance(rule, str) else (rule[0], dict(rule[1]))


def rule_label(rule) -> str:
    """A short name that tells rules with different options apart: ``lrp-epsilon=0.01``, ``alpha2-beta1``."""
    name, opts = rule_spec(rule)
    if name == "lrp-epsilon":
        return f"lrp-epsilon={float(opts.get('epsilon', 1e-6)):g}"
    if name == "alpha-beta":
        return f"alpha{float(opts.get('alpha', 2.0)):g}-beta{float(opts.get('beta', 1.0)):g}"
    return name


def empirical_constants(model, inputs, rules, *, perturbation: str | None = None, level: float = 0.0,
                        copies: int = 0, norms: int = 0, seed: int = 0, input_bounds=(0.0, 1.0), extract=_extract,
                        net=None, **extract_options) -> list[dict]:
    """Records of C(x) for every input of the set and every rule (see the module docstring).

    ``inputs``: model inputs (each with batch dimension 1), the test images; ``copies`` perturbed copies of each
    (``perturbation`` at ``level``, seeded by ``seed`` and the image index).
    """
    rules = [rule_spec(r) for r in rules]
    rows = []
    for i, img in enumerate(inputs):
        x0 = np.asarray(img.detach().cpu().numpy() if hasattr(img, "detach") else img, dtype=np.float64)
        rng = np.random.default_rng([seed, i])
        xs = [x0] + [perturb(x0, perturbation, level, rng, input_bounds) for _ in range(copies)]
        target = None
        for j, x in enumerate(xs):
            for name, opts in rules:
                ch = extract(model, x, name, **opts, **extract_options)
                if target is None:
                    target = ch.predicted
                ch.meta.update(net=net, image=i)
                got = constants(ch, target, norms=j == 0 and i < norms)
                for r in got:
                    r.update(rule=rule_label((name, opts)), rule_name=name, copy=j,
                             perturbation=perturbation if j else None, level=level if j else None)
                rows += got
    return rows
