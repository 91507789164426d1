"""The spectral view of explanations (Mehrpanah et al. 2025): expected frequency, explanation gap, per-layer spectra.

Maps and chains in, tidy records out (``measure="spectral"``).  For one explanation e (C, H, W):

1. channel reduction to one H×W map: ``reduce="sum"`` the signed channel sum Σ_c e_c (the authors'
   ``agg_means.sum(dim=0)``), or "abs-sum" Σ_c |e_c|, or "l2" (Σ_c e_c²)^½;
2. rank normalization ρ = rank(m)/(HW): ranks ascending on the signed values, ties get their average
   rank (scipy ``rankdata``, method "average", as the authors), so ρ ∈ (0, 1] with mean (HW+1)/(2HW);
3. the centred 2-D DFT F = fftshift(fft2(ρ)) (no window, no padding, unnormalized) and its power |F|²;
4. the radial power spectrum P(r), r = 0 … L−1: the mean of |F(u, v)|² over the frequencies with
   ⌊√((u − c_u)² + (v − c_v)²)⌋ = r, c = (H//2, W//2).  The bins run to the corners of the spectrum,
   as in the authors' code: L = ⌊√(c_u² + c_v²)⌋ + 1 bins for an even N×N map (N = 32 → L = 23,
   224 → 159).  Bin 0 holds only the DC term |F(c)|² = (Σρ)²; ``dc="exclude"`` (default) sets it to 0
   (the map's mean removed), ``dc="include"`` keeps it;
5. the expected frequency EF = Σ_r f_r P(r) / Σ_r P(r), f_r = r/(L−1) ∈ [0, 1].

EF, DC and the authors' code.  f_0 = 0, so the DC bin only enters the denominator; but for a rank map
it is a constant, ((HW+1)/2)², and it holds > 99 % of Σ_r P(r) (white-noise map, N = 32: EF ≈ 0.5 with
DC excluded, ≈ 4e-3 with it included).  The default excludes it, so that EF is the mean normalized
frequency of the map's variation, in [0, 1]; EF of a constant map (no power off DC) is defined as 0,
the value the authors' formula gives.  Their code has two other variants, reported beside ours:

* per image (``quant_measures_grads.py``): EF_code = mean_r(f_r P(r)/Σ_r P(r)) = (1/L)·Σ_r f_r P(r)/Σ_r P(r)
  with the DC bin included — the issue's formula with an extra factor 1/L (``.mean()`` for ``.sum()``);
* in the figures (``plots.py``): EF_fig = (1/L)·Σ_r r·P̄(r)/Σ_r P̄(r) on the spectrum P̄ averaged over the
  images first (DC included) = EF_include(P̄)·(L−1)/L.

Explanation gap of a method m (per image): ΔEF_m(x) = EF(VG(x)) − EF(e_m(x)) (VG = the vanilla gradient of
the same net; > 0 when m is smoother).  The authors' code has no per-image gap: one table of
mean_x EF_code(m) − mean_x EF_code(VG of the ReLU net) ×1e5 (sign method − VG), see
:func:`code_gap`.

Per layer (:func:`layer_spectra`): the backward signal of a gradient chain at every boundary
(:meth:`chainlab.chain.Chain.trajectory`): at a stage's output, after its mask (at the pre-activation z:
the mask step d ⊙ r), and after its linear part (the next boundary).  Each (C, H, W) signal is measured
per channel map (``channels="each"``: mean EF over the channels with power off DC; channels without any
are counted, not measured) or as the signed channel sum (``channels="sum"``, the authors' reduction).
Flat signals (after a Flatten) have no 2-D spectrum and are skipped.
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from ..errors import InputError
from ..options import choice, flag
from ._common import RECORD_KEYS

__all__ = ["REDUCTIONS", "DC_MODES", "channel_maps", "rank_normalize", "radial_bins", "radial_spectrum",
           "expected_frequency", "ef_code", "ef_figure", "spectral", "explanation_gap", "code_gap", "layer_spectra",
           "map_records"]

REDUCTIONS = ("sum", "abs-sum", "l2")
DC_MODES = ("exclude", "include")
CHANNEL_MODES = ("each", "sum")
WHERE = "the spectral measure"


def _row(net, rule, image, quantity, layer=None, k=None, value=None, **extras) -> dict:
    row = dict(zip(RECORD_KEYS, (net, rule, image, "spectral", quantity, layer, k,
                                 None if value is None else float(value))))
    row.update({key: (v.item() if isinstance(v, np.generic) else v) for key, v in extras.items()})
    return row


# -- maps ---------------------------------------------------------------------------------------------
def channel_maps(explanations, reduce: str = "sum") -> np.ndarray:
    """(…, C, H, W) → (…, H, W) by ``reduce`` ("sum": signed channel sum, the authors'; "abs-sum"; "l2")."""
    reduce = choice("reduce", reduce, REDUCTIONS, WHERE)
    e = np.asarray(explanations, dtype=np.float64)
    if e.ndim < 3:
        raise InputError(f"channel_maps needs (…, C, H, W) explanations, got shape {e.shape}")
    if reduce == "sum":
        return e.sum(axis=-3)
    if reduce == "abs-sum":
        return np.abs(e).sum(axis=-3)
    return np.sqrt((e * e).sum(axis=-3))


def rank_normalize(maps) -> np.ndarray:
    """rank(m)/(H·W) of every H×W map in (…, H, W): ascending on the signed values, average ranks for ties."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim < 2:
        raise InputError(f"rank_normalize needs (…, H, W) maps, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise InputError("rank_normalize: the maps contain NaN or infinite values")
    H, W = m.shape[-2:]
    flat = m.reshape(-1, H * W)
    return (rankdata(flat, method="average", axis=1) / (H * W)).reshape(m.shape)


@functools.lru_cache(maxsize=32)
def radial_bins(H: int, W: int):
    """(bin index (H, W) int, L, averaging matrix A (H·W × L) sparse): P = |F|²_flat @ A, centre (H//2, W//2)."""
    y, x = np.indices((H, W))
    r = np.sqrt((x - W // 2) ** 2 + (y - H // 2) ** 2).astype(np.int64)
    L = int(r.max()) + 1
    counts = np.bincount(r.ravel(), minlength=L).astype(np.float64)
    A = sp.csr_matrix((1.0 / counts[r.ravel()], (np.arange(H * W), r.ravel())), shape=(H * W, L))
    return r, L, A


def radial_spectrum(maps, *, rank: bool = True, dc: str = "exclude") -> np.ndarray:
    """P(r) (…, L) of every map in (…, H, W): mean |fftshift(fft2(ρ))|² per integer radius bin (module docstring).

    ``rank``: rank-normalize first (True, the measure) or take the values as they are; ``dc``: "exclude" sets
    P(0) = 0 (the mean removed), "include" keeps the DC power."""
    rank = flag("rank", rank, WHERE)
    dc = choice("dc", dc, DC_MODES, WHERE)
    m = rank_normalize(maps) if rank else np.asarray(maps, dtype=np.float64)
    H, W = m.shape[-2:]
    if H < 2 or W < 2:
        raise InputError(f"a radial spectrum needs maps of at least 2×2 values, got {H}×{W}")
    power = np.abs(np.fft.fftshift(np.fft.fft2(m), axes=(-2, -1))) ** 2
    _, L, A = radial_bins(H, W)
    P = np.asarray((A.T @ power.reshape(-1, H * W).T).T).reshape(m.shape[:-2] + (L,))
    if dc == "exclude":
        P[..., 0] = 0.0
    return P


def expected_frequency(P, *, empty: float = 0.0) -> np.ndarray:
    """EF = Σ_r f_r P(r) / Σ_r P(r), f_r = r/(L−1), over the last axis of P (…, L); ``empty`` where Σ P = 0."""
    P = np.asarray(P, dtype=np.float64)
    L = P.shape[-1]
    if L < 2:
        raise InputError(f"an expected frequency needs at least 2 radial bins, got {L}")
    f = np.arange(L) / (L - 1)
    total = P.sum(axis=-1)
    num = (P * f).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ef = np.where(total > 0, num / np.where(total > 0, total, 1.0), empty)
    return ef


def ef_code(P_dc) -> np.ndarray:
    """The authors' per-image EF_code = (1/L)·Σ_r f_r P(r)/Σ_r P(r) of spectra P (…, L) with the DC bin included."""
    P = np.asarray(P_dc, dtype=np.float64)
    return expected_frequency(P) / P.shape[-1]


def ef_figure(P_dc) -> float:
    """The authors' figure EF_fig = (1/L)·Σ_r r·P̄(r)/Σ_r P̄(r) of the mean P̄ of spectra P (n, L), DC included."""
    Pm = np.asarray(P_dc, dtype=np.float64).reshape(-1, np.shape(P_dc)[-1]).mean(axis=0)
    L = Pm.size
    return float(expected_frequency(Pm) * (L - 1) / L)


# -- explanations ----------------------------------------------------------------------------------
def map_records(maps, *, net=None, rule=None, images=None, dc: str = "exclude", spectra: bool = False,
                **extras) -> list[dict]:
    """Records of H×W maps (n, H, W): per map EF (``dc``) and EF_code; per set EF_fig and the mean spectrum.

    Quantities: ``EF`` and ``EF_code`` per image; ``EF_fig`` (image None); ``P_mean`` with k = r (the mean
    of the rank-normalized spectra, ``dc`` as chosen); per image ``P`` (k = r) with ``spectra=True``.
    Every row carries ``L`` and ``dc`` and the ``extras``."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim == 2:
        maps = maps[None]
    n = maps.shape[0]
    images = list(range(n)) if images is None else list(images)
    if len(images) != n:
        raise InputError(f"{len(images)} image ids for {n} maps")
    P_dc = radial_spectrum(maps, dc="include")
    P = P_dc.copy()
    if choice("dc", dc, DC_MODES, WHERE) == "exclude":
        P[..., 0] = 0.0
    L = P.shape[-1]
    ef, efc = expected_frequency(P), ef_code(P_dc)
    ex = dict(L=L, dc=dc, **extras)
    rows = []
    for i, img in enumerate(images):
        rows.append(_row(net, rule, img, "EF", value=ef[i], **ex))
        rows.append(_row(net, rule, img, "EF_code", value=efc[i], **ex))
        if spectra:
            rows += [_row(net, rule, img, "P", k=r, value=P[i, r], **ex) for r in range(L)]
    rows.append(_row(net, rule, None, "EF_fig", value=ef_figure(P_dc), n_images=n, **ex))
    Pm = P.mean(axis=0)
    rows += [_row(net, rule, None, "P_mean", k=r, value=Pm[r], n_images=n, **ex) for r in range(L)]
    return rows


def spectral(explanations, *, net=None, rule=None, images=None, reduce: str = "sum", dc: str = "exclude",
             spectra: bool = False, **extras) -> list[dict]:
    """Records (``measure="spectral"``) of explanations (n, C, H, W) — or maps (n, H, W) with ``reduce=None`` —
    reduced over channels (``reduce``), rank-normalized, their radial spectra and EF (see :func:`map_records`)."""
    e = np.asarray(explanations, dtype=np.float64)
    maps = e if reduce is None else channel_maps(e, reduce)
    return map_records(maps, net=net, rule=rule, images=images, dc=dc, spectra=spectra,
                       reduce=reduce or "none", **extras)


def explanation_gap(records, reference: str, *, quantities=("EF", "EF_code")) -> list[dict]:
    """ΔEF_m(x) = EF(reference(x)) − EF(m(x)) per image for every other rule m of the same net (records).

    ``records`` are spectral records with ``EF``/``EF_code`` per image (from :func:`spectral`); rows are paired
    by (net, image).  Per image: quantity ``delta_<q>`` (value, extra ``reference``); per (net, m) the
    distribution: ``delta_<q>_median``, ``_mean``, ``_q25``, ``_q75``, ``_positive`` (fraction > 0), with n_images."""
    by = {}
    for r in records:
        if r.get("measure") == "spectral" and r.get("quantity") in quantities and r.get("image") is not None:
            by[(r.get("net"), r.get("rule"), r.get("quantity"), r.get("image"))] = r
    rows = []
    nets = sorted({k[0] for k in by}, key=str)
    for net in nets:
        rules = sorted({k[1] for k in by if k[0] == net and k[1] != reference}, key=str)
        for m in rules:
            for q in quantities:
                imgs = sorted(k[3] for k in by if k[0] == net and k[1] == m and k[2] == q
                              and (net, reference, q, k[3]) in by)
                if not imgs:
                    continue
                extra = {key: v for key, v in by[(net, m, q, imgs[0])].items()
                         if key not in RECORD_KEYS}
                d = np.array([by[(net, reference, q, i)]["value"] - by[(net, m, q, i)]["value"] for i in imgs])
                rows += [_row(net, m, i, f"delta_{q}", value=v, reference=reference, **extra)
                         for i, v in zip(imgs, d)]
                summ = {"median": np.median(d), "mean": d.mean(), "q25": np.quantile(d, 0.25),
                        "q75": np.quantile(d, 0.75), "positive": float((d > 0).mean())}
                rows += [_row(net, m, None, f"delta_{q}_{s}", value=v, reference=reference, n_images=len(d), **extra)
                         for s, v in summ.items()]
    return rows


def code_gap(records, reference_net: str, reference_rule: str) -> list[dict]:
    """The authors' gap table: mean_x EF_code(m on net) − mean_x EF_code(reference_rule on reference_net), ×1e5.

    One row per (net, rule) with EF_code records (quantity ``code_gap_x1e5``, image None); sign method − VG,
    so smoother methods come out negative (the authors' convention; opposite to ΔEF)."""
    means = {}
    for r in records:
        if r.get("measure") == "spectral" and r.get("quantity") == "EF_code" and r.get("image") is not None:
            means.setdefault((r.get("net"), r.get("rule")), []).append(r["value"])
    if (reference_net, reference_rule) not in means:
        raise InputError(f"no EF_code records of {reference_rule!r} on {reference_net!r}")
    ref = float(np.mean(means[(reference_net, reference_rule)]))
    return [_row(net, rule, None, "code_gap_x1e5", value=(float(np.mean(v)) - ref) * 1e5,
                 reference=f"{reference_net}/{reference_rule}", n_images=len(v))
            for (net, rule), v in sorted(means.items(), key=lambda kv: tuple(map(str, kv[0])))]


# -- per layer, on a chain -----------------------------------------------------------------------------
def _signal_ef(signal, shape, channels, rank, dc):
    """(mean EF over channel maps with power off DC or None, #channels used, #without, spectra, used)."""
    sig = np.asarray(signal, dtype=np.float64).reshape(shape)
    maps = sig if channels == "each" else sig.sum(axis=0, keepdims=True)
    P = radial_spectrum(maps, rank=rank, dc=dc)
    ef = expected_frequency(P, empty=np.nan)
    used = ~np.isnan(ef)
    if dc == "include":
        used = np.ptp(maps.reshape(maps.shape[0], -1), axis=1) > 0
    return (float(ef[used].mean()) if used.any() else None), int(used.sum()), int((~used).sum()), P, used


def _spatial(shape) -> bool:
    return len(shape) == 3 and shape[1] >= 2 and shape[2] >= 2


def layer_spectra(chain, target=None, of: str = "logprob", *, channels: str = "each", dc: str = "exclude",
                  rank: bool = True, spectra: bool = False) -> list[dict]:
    """EF of the backward signal at every boundary of a (gradient) chain, and its change at every mask.

    Boundaries come from :meth:`~chainlab.chain.Chain.trajectory` of the start vector of ``target`` (default
    the prediction) and ``of``.  Quantity ``EF_layer``: k counts the boundaries from the input (k = 0) to the
    logits, ``layer`` is the stage name, extra ``at`` is "input" | "pre-activation" (after the mask step) |
    "output" (the stage's output, before its mask), ``stage`` the operator index, ``masked``, ``shape``.
    ``channels="each"``: value = the mean EF over the channel maps with power off DC (extras ``n_channels``
    used, ``n_flat`` without any); ``"sum"``: EF of the signed channel sum.  ``spectra=True`` adds ``P_layer``
    rows (the mean spectrum over the used channel maps, extra ``r``).

    Quantity ``EF_mask_rise`` per masked stage i with a spatial output: EF(d_i ⊙ r) − EF(r), r the signal at
    the stage's output (extra ``order="chain"``).  When the next operator is a max-pool without activation
    (winner-take-all, layer rule "winner-take-all"), ReLU and max-pool commute (max ReLU = ReLU max), so the
    same backward also factors as: mask at the pooled resolution, then the scatter; that mask step is
    reported too (``order="before-scatter"``): EF((Pᵀd_i) ⊙ r_p) − EF(r_p), r_p the signal at the pool's
    output and Pᵀd_i the mask at the pool's winners."""
    channels = choice("channels", channels, CHANNEL_MODES, WHERE)
    dc = choice("dc", dc, DC_MODES, WHERE)
    start = chain.start_vector(target, of)
    traj = chain.trajectory(start)[::-1]               # input side first
    meta = getattr(chain, "meta", {}) or {}
    net, image = meta.get("net"), meta.get("image")
    rows, ef_at, sig_at = [], {}, {}
    for k, b in enumerate(traj):
        shape = tuple(b["shape"])
        sig_at[(b["stage"], b["at"])] = b["signal"]
        if not _spatial(shape):
            continue
        value, n_used, n_flat, P, used = _signal_ef(b["signal"], shape, channels, rank, dc)
        ef_at[(b["stage"], b["at"])] = value
        ex = dict(at=b["at"], stage=b["stage"], masked=chain.masks[b["stage"]] is not None,
                  shape="x".join(map(str, shape)), channels=channels, dc=dc, of=of, n_channels=n_used, n_flat=n_flat)
        rows.append(_row(net, chain.rule, image, "EF_layer", b["name"], k, value, **ex))
        if spectra and used.any():
            Pm = P[used].mean(axis=0)
            rows += [_row(net, chain.rule, image, "P_layer", b["name"], k, Pm[r], r=r, **ex) for r in range(P.shape[-1])]
    common = dict(channels=channels, dc=dc, of=of)
    for i in range(len(chain)):
        if chain.masks[i] is None or not _spatial(tuple(chain.shapes[i + 1])):
            continue
        before, after = ef_at.get((i, "output")), ef_at.get((i, "pre-activation"))
        rise = None if before is None or after is None else after - before
        rows.append(_row(net, chain.rule, image, "EF_mask_rise", chain.names[i], i, rise, order="chain",
                         before=before, after=after, **common))
        nxt = i + 1
        if (nxt < len(chain) and chain.masks[nxt] is None and chain.layer_rules[nxt] == "winner-take-all"
                and _spatial(tuple(chain.shapes[nxt + 1]))):
            shape = tuple(chain.shapes[nxt + 1])
            r_p = np.asarray(sig_at[(nxt, "output")])
            d_p = chain[nxt].rmatvec(chain.masks[i])          # the mask at the pool's winners
            b0 = _signal_ef(r_p, shape, channels, rank, dc)[0]
            a0 = _signal_ef(d_p * r_p, shape, channels, rank, dc)[0]
            rise = None if b0 is None or a0 is None else a0 - b0
            rows.append(_row(net, chain.rule, image, "EF_mask_rise", chain.names[i], i, rise,
                             order="before-scatter", before=b0, after=a0, pool=chain.names[nxt], **common))
    return rows
