"""Measures on chains: what the theory predicts, computed on extracted operators (never on torch models).

``measure(chains, what=[...], **opts) -> list[dict]`` runs the per-chain measures by name:

* ``spectra``  σ1, σ2, σ1/σ2 of layers, prefix products and inter-layer members T_l (:mod:`.spectra`)
* ``rank1``    rank-1 convergence of P_k (:mod:`.rank1`)
* ``csc``      cosine similarity convergence, pooled over the chains of a net and rule (:mod:`.csc`)
* ``cone``     angular / Hilbert diameters and Birkhoff contraction (:mod:`.cone`)
* ``bounds``   value bounds and σ1 bounds (:mod:`.bounds`)
* ``constants`` the empirical componentwise constant of one explanation beside its a-priori constant (:mod:`.bounds`)

The spectral view of explanations (Mehrpanah et al. 2025: rank-normalized maps, radial power spectra,
expected frequency EF, explanation gap ΔEF, EF per layer boundary of a chain) is :mod:`.spectral`.

Every record is a dict with keys net, rule, image, measure, quantity, layer, k, value (+ extras).
Also here: the singular-value solvers (:mod:`.svd`), prefix products (:mod:`.prefix`), explanation
maps and SSIM (:mod:`.maps`), tidy CSV records (:mod:`.records`).  (Trends across nets and their intervals are
decided in :mod:`chainlab.papers.stats`.)  Measures that change or re-run the
model (weight scaling, averages over perturbed inputs, cascading randomization) are
:mod:`chainlab.studies`.

May import: :mod:`chainlab.linalg`, :mod:`chainlab.options`, :mod:`chainlab.errors` (chains arrive as
arguments; nothing here imports torch models, rules or extraction).
"""
from __future__ import annotations

import inspect

from ..errors import OptionError
from ..options import check_known
from .bounds import (
    apriori_constants,
    bounds,
    constants,
    norm1,
    norm_inf,
    weight_norm_product,
)
from .cone import (
    angular_diameter,
    birkhoff,
    cone,
    hilbert_distance,
    projective_diameter,
)
from .csc import abs_cosines, channel_vectors, csc, csc_values, random_baseline
from .maps import random_logit_ssim, ssim, to_map
from .prefix import (
    PowerResult,
    PrefixProduct,
    implicit_prefix,
    prefix_power,
    prefix_products,
)
from .rank1 import rank1, rank1_quantities
from .records import read_csv, write_csv
from .spectra import interlayer_members, prefix_spectra_power, spectra
from .spectral import (
    channel_maps,
    ef_code,
    ef_figure,
    expected_frequency,
    explanation_gap,
    layer_spectra,
    radial_spectrum,
    rank_normalize,
    spectral,
)
from .svd import (
    LanczosResult,
    lanczos_singular_values,
    singular_triplets,
    singular_values,
    subspace_singular_values,
)

PER_CHAIN = {"spectra": spectra, "rank1": rank1, "cone": cone, "bounds": bounds, "constants": constants}
POOLED = {"csc": csc}
MEASURES = tuple(PER_CHAIN) + tuple(POOLED)

__all__ = [
    "measure", "MEASURES", "PER_CHAIN", "POOLED", "spectra", "rank1", "csc", "cone", "bounds", "write_csv",
    "read_csv", "singular_values", "singular_triplets", "interlayer_members", "rank1_quantities", "csc_values",
    "random_baseline", "channel_vectors", "abs_cosines", "angular_diameter", "hilbert_distance",
    "projective_diameter", "birkhoff", "norm1", "norm_inf", "apriori_constants", "random_logit_ssim", "ssim",
    "to_map", "prefix_products", "implicit_prefix", "PrefixProduct", "prefix_power", "prefix_spectra_power",
    "PowerResult", "lanczos_singular_values", "LanczosResult", "subspace_singular_values", "measure_options",
    "constants", "weight_norm_product",
    "spectral", "layer_spectra", "explanation_gap", "expected_frequency", "ef_code", "ef_figure", "radial_spectrum",
    "rank_normalize", "channel_maps",
]


def measure_options(what) -> set:
    """The option names the measures ``what`` take (the union of their keyword parameters)."""
    fns = [PER_CHAIN.get(w) or POOLED[w] for w in what]
    return {p for fn in fns for p, v in inspect.signature(fn).parameters.items() if v.kind is v.KEYWORD_ONLY}


def _accepted(fn, opts):
    params = inspect.signature(fn).parameters
    return {k: v for k, v in opts.items() if k in params}


def measure(chains, what=("spectra", "rank1", "csc", "cone", "bounds"), **opts) -> list[dict]:
    """Run the named measures on one chain or a list of chains; concatenated records.

    Options are passed to every measure that takes them (e.g. ``pairs``/``layers`` to csc, ``top`` to
    spectra).  Unknown measure names or options no measure takes raise OptionError.
    """
    if isinstance(what, str):
        what = [what]
    what = list(what)
    unknown = [w for w in what if w not in MEASURES]
    if unknown:
        raise OptionError(f"unknown measure(s) {', '.join(map(repr, unknown))}; known: {', '.join(MEASURES)}")
    check_known(opts, measure_options(what), f"the measures {', '.join(what)}")
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
