"""Measures on chains: what the theory predicts, computed on extracted operators (never on torch models).

``measure(chains, what=[...], **opts) -> list[dict]`` runs the per-chain measures by name:

* ``spectra``  σ1, σ2, σ1/σ2 of layers, prefix products and inter-layer members T_l (:mod:`.spectra`)
* ``rank1``    rank-1 convergence of P_k (:mod:`.rank1`)
* ``csc``      cosine similarity convergence, pooled over the chains of a net and rule (:mod:`.csc`)
* ``cone``     angular / Hilbert diameters and Birkhoff contraction (:mod:`.cone`)
* ``bounds``   value bounds and σ1 bounds (:mod:`.bounds`)

Every record is a dict with keys net, rule, image, measure, quantity, layer, k, value (+ extras).
Measures that need the model take it explicitly: :func:`weight_scaling` (:mod:`.scaling`),
:func:`averages` (:mod:`.averages`), :func:`sanity` (:mod:`.sanity`).
"""
from __future__ import annotations

import inspect

from .averages import averages, hoeffding_samples
from .bounds import BoundViolationError, apriori_constants, bounds, norm1, norm_inf
from .cone import ConeViolationError, angular_diameter, birkhoff, cone, hilbert_distance, projective_diameter
from .csc import channel_vectors, csc, csc_values, random_baseline
from .rank1 import rank1, rank1_quantities
from .records import read_csv, write_csv
from .sanity import cascading_randomization, random_logit_ssim, sanity, ssim
from .scaling import scale_weights, weight_scaling
from .spectra import interlayer_members, singular_triplets, singular_values, spectra
from .power import PowerResult, prefix_power, prefix_spectra_power
from .krylov import LanczosResult, lanczos_singular_values
from ._products import PrefixProduct, prefix_products

PER_CHAIN = {"spectra": spectra, "rank1": rank1, "cone": cone, "bounds": bounds}
POOLED = {"csc": csc}
MEASURES = tuple(PER_CHAIN) + tuple(POOLED)

__all__ = [
    "measure", "MEASURES", "spectra", "rank1", "csc", "cone", "bounds", "averages", "sanity", "weight_scaling",
    "write_csv", "read_csv", "singular_values", "singular_triplets", "interlayer_members", "rank1_quantities",
    "csc_values", "random_baseline", "channel_vectors", "angular_diameter", "hilbert_distance",
    "projective_diameter", "birkhoff", "norm1", "norm_inf", "apriori_constants", "hoeffding_samples",
    "random_logit_ssim", "cascading_randomization", "ssim", "scale_weights", "prefix_products", "PrefixProduct",
    "BoundViolationError", "ConeViolationError", "prefix_power", "prefix_spectra_power", "PowerResult",
    "lanczos_singular_values", "LanczosResult",
]


def _accepted(fn, opts):
    params = inspect.signature(fn).parameters
    return {k: v for k, v in opts.items() if k in params}


def measure(chains, what=("spectra", "rank1", "csc", "cone", "bounds"), **opts) -> list[dict]:
    """Run the named measures on one chain or a list of chains; concatenated records.

    Options are passed to every measure that takes them (e.g. ``pairs``/``layers`` to csc, ``top`` to
    spectra, ``model`` to bounds).  Unknown measure names or options no measure takes raise ValueError.
    """
    if isinstance(what, str):
        what = [what]
    what = list(what)
    unknown = [w for w in what if w not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measure(s) {', '.join(map(repr, unknown))}; known: {', '.join(MEASURES)}")
    fns = [PER_CHAIN.get(w) or POOLED[w] for w in what]
    taken = set()
    for fn in fns:
        taken |= set(inspect.signature(fn).parameters)
    stray = sorted(set(opts) - taken)
    if stray:
        raise ValueError(f"option(s) {', '.join(map(repr, stray))} are taken by none of the measures {what}")
    if not isinstance(chains, (list, tuple)):
        chains = [chains]
    rows = []
    for w in what:
        if w in POOLED:
            rows += POOLED[w](list(chains), **_accepted(POOLED[w], opts))
        else:
            fn = PER_CHAIN[w]
            for ch in chains:
                rows += fn(ch, **_accepted(fn, opts))
    return rows
