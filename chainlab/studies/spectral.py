"""The spectral study: EF and the explanation gap ΔEF of several explanation methods on one net's images.

``explanation_spectra(model, X, methods)`` explains every image with every method, measures the maps
(:func:`chainlab.measures.spectral.spectral`: channel sum, rank normalization, radial spectrum, EF and
the authors' EF_code / EF_fig) and pairs them with the reference method (default "vanilla") into
ΔEF_m(x) = EF(VG(x)) − EF(e_m(x)) (:func:`chainlab.measures.spectral.explanation_gap`).

A method is ``label -> {"kind": kind, **options}``:

=============  ======================================================================================
kind           explanation (n, C, H, W) of the class k the net predicts for the clean image
=============  ======================================================================================
"vanilla"      ∇_x y_k (:func:`.explanations.vanilla`)
"smoothgrad"   mean gradient over n noisy copies, options sigma, n, seed (:func:`.explanations.smoothgrad`)
"gradcam"      GradCAM / Guided GradCAM, options layer, upsample, guided, of (:func:`.explanations.gradcam`)
"rule"         any extraction rule through its chain, per image: ``extract(model, x, rule, **options)
               .explain(k, of)``, e.g. {"kind": "rule", "rule": "smooth-gradient", "beta": 3.0}
=============  ======================================================================================

``of`` ("logprob" default, or "logit") applies to every method that does not set its own.
"""
from __future__ import annotations

import numpy as np

from ..errors import OptionError
from ..extraction import extract as _extract
from ..measures._common import RECORD_KEYS
from ..measures.spectral import explanation_gap, spectral
from ..options import choice
from .explanations import OF, Traced, gradcam, predict, smoothgrad, vanilla

__all__ = ["explanation_spectra", "explain", "KINDS"]

KINDS = ("vanilla", "smoothgrad", "gradcam", "rule")


def explain(model, X, spec: dict, *, targets, of: str = "logprob", traced: Traced | None = None,
            extract=_extract) -> np.ndarray:
    """The explanations (n, C, H, W) of method ``spec`` (see the module docstring) for the classes ``targets``."""
    spec = dict(spec)
    kind = choice("kind", spec.pop("kind", None), KINDS, "the spectral study")
    of = spec.pop("of", of)
    if "dtype" in spec and kind != "rule":
        raise OptionError(f"a method of kind {kind!r} runs in the study's dtype (explanation_spectra(dtype=…)); "
                          "remove 'dtype' from the method")
    if kind == "vanilla":
        return vanilla(model, X, targets=targets, of=of, traced=traced, **spec)
    if kind == "smoothgrad":
        return smoothgrad(model, X, targets=targets, of=of, traced=traced, **spec)
    if kind == "gradcam":
        return gradcam(model, X, targets=targets, of=of, traced=traced, extract=extract, **spec)
    rule = spec.pop("rule", None)
    if rule is None:
        raise OptionError("a method of kind 'rule' needs 'rule': the extraction rule to explain with")
    X = np.asarray(X, dtype=np.float64)
    return np.asarray([extract(model, x[None], rule, **spec).explain(int(t), of=of)[0] for x, t in zip(X, targets)])


def explanation_spectra(model, X, methods: dict, *, net=None, images=None, targets=None, of: str = "logprob",
                        reference: str | None = "vanilla", reduce: str = "sum", dc: str = "exclude",
                        spectra: bool = False, dtype: str = "float64", extract=_extract,
                        keep: bool = False):
    """Spectral records of every method on the images X (n, C, H, W), plus ΔEF against ``reference``.

    Returns the records (``measure="spectral"``: EF, EF_code per image, EF_fig, P_mean, and delta_EF /
    delta_EF_code per image and their distribution; rule = the method's label, extra ``method`` = its kind
    and its scalar options), or (records, {label: explanations}) with ``keep``."""
    of = choice("of", of, OF, "the spectral study")
    if reference is not None and reference not in methods:
        raise OptionError(f"reference method {reference!r} is not among the methods ({', '.join(methods)})")
    X = np.asarray(X, dtype=np.float64)
    images = list(range(len(X))) if images is None else list(images)
    tr = Traced(model, dtype)
    t = predict(model, X, traced=tr) if targets is None else np.asarray(targets).reshape(-1)
    rows, kept = [], {}
    for label, spec in methods.items():
        E = explain(model, X, spec, targets=t, of=of, traced=tr, extract=extract)
        extras = {(f"method_{k}" if k in RECORD_KEYS else k): v for k, v in spec.items()
                  if k not in ("kind", "of") and isinstance(v, (int, float, str, bool))}
        rows += spectral(E, net=net, rule=label, images=images, reduce=reduce, dc=dc, spectra=spectra,
                         method=spec.get("kind"), of=spec.get("of", of), **extras)
        if keep:
            kept[label] = E
    if reference is not None:
        rows += explanation_gap(rows, reference)
    return (rows, kept) if keep else rows
