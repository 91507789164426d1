"""The backward pass of B inputs under one method: stage operators applied to torch batches.

A :class:`BatchChain` holds one stage operator per layer (:mod:`chainlab.linalg.implicit`,
:mod:`~chainlab.linalg.pairs`, :mod:`~chainlab.linalg.residual`) whose per-image factors carry the batch
dimension, and propagates signals of shape (B, m, *shape) — m signals per image, one torch convolution for
all B·m of them.  ``stages[i]`` maps boundary i+1 to boundary i, like ``chain[i]``, split as

    back_i = lin_i ∘ act_i,

``act_i`` the step of the activation after stage i (ρ'(z) in gradient space; a rectifier; DeepLIFT's
multipliers; none in relevance space).  So a signal injected *after* the activation of stage k−1
(``inject="post"``, boundary k) goes through back_(k−1); one injected at its pre-activation output
(``inject="pre"``) only through lin_(k−1); likewise a signal is read at boundary j after (``"post"``) or
before (``"pre"``, act_(j−1) applied) the activation.

What is read at a boundary (``read``): the signal itself; ×x at the input of gradient × input; for DeepLIFT
the contributions m ⊙ Δh (the package's rule: one multiplier per neuron), or m⁺ ⊙ Δh⁺ + m⁻ ⊙ Δh⁻ of ± pairs
(B, m, 2, *shape) (the ``-pm`` variants) — equal before and after the activation.

The same object with B = 1 is one chain: :meth:`BatchChain.chain` returns it as a
:class:`~.base.Chain` (or :class:`~.rectified.RectifiedChain`, :class:`~.deeplift.DeepLiftChain`,
:class:`~.contrastive.ContrastiveChain`) whose operators are these stage operators, or their explicit
matrices (``materialize``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError, OptionError
from ..linalg import ResidualOperator, per_image, scale_rows
from ..linalg.implicit import flat_numpy
from .base import Chain
from .contrastive import ContrastiveChain, contrast
from .deeplift import DeepLiftChain
from .rectified import RectifiedChain, RectifiedResidual

__all__ = ["BatchChain", "KINDS"]

KINDS = ("layerwise", "rectified", "deeplift", "contrastive")


class BatchChain:
    """The backward pass of B inputs under one method (module docstring).

    stages: the stage operators, input side first; names: the stage names; shapes: the signal shapes at the
    boundaries without batch dimension (``shapes[0]`` the input's); x (B, *input) and logits (B, K); rule;
    kind: one of KINDS; space: "gradient" | "relevance" | "deeplift"; dtype: the torch dtype of the signals;
    options: the options used (recorded by :meth:`chain`).  Per kind:

    * layerwise: ``masks`` (the output-side factor per stage, (B|1, n) or None), ``input_scale`` (gradient ×
      input: x), ``layer_stats``;
    * contrastive: ``clip`` (max(0, ·) of contrastive LRP; the stages are z⁺'s);
    * deeplift: ``deltas[j]`` — Δh_j per boundary, (Δh⁺_j, Δh⁻_j) for ± pairs (``paired``), (B|1, 1, *shape_j):
      what contributions are read with; ``reference`` x⁰ (B, *input), ``reference_logits`` f(x⁰) (B, K),
      ``delta_input`` (Δx⁺, Δx⁻), ``variant``;
    * rectified: the stages' steps are :class:`~.rectified.Rectifier` s.
    """

    def __init__(self, stages, *, names, shapes, x, logits, rule, kind, space, dtype, options, layer_rules=None,
                 masks=None, input_scale=None, layer_stats=None, clip=None, deltas=None, paired=False,
                 reference=None, reference_logits=None, delta_input=None, variant=None, meta=None):
        if kind not in KINDS:
            raise InputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.stages = list(stages)
        self.names = list(names)
        self.shapes = [tuple(s) for s in shapes]
        self.x = x
        self.logits = logits
        self.rule = rule
        self.kind = kind
        self.space = space
        self.dtype = dtype
        self.options = dict(options)
        self.layer_rules = list(layer_rules) if layer_rules is not None else [str(rule)] * len(self.stages)
        self.masks = list(masks) if masks is not None else [None] * len(self.stages)
        self.input_scale = per_image(input_scale, self.shapes[0])
        self.layer_stats = layer_stats
        self.clip = clip
        self.deltas = deltas
        self.paired = bool(paired)
        self.reference, self.reference_logits = reference, reference_logits
        self.delta_input, self.variant = delta_input, variant
        self.meta = dict(meta or {})

    def __len__(self):
        return len(self.stages)

    def __repr__(self):
        return f"<BatchChain rule={self.rule!r} {self.kind} B={self.batch} layers={len(self)}>"

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])

    @property
    def predicted(self) -> np.ndarray:
        return self.logits.argmax(dim=1).numpy()

    @property
    def linear(self) -> bool:
        """False for the rectified methods (the signal is rectified between layers)."""
        return self.kind != "rectified"

    @property
    def linear_explain(self) -> bool:
        """Whether the explanation is the propagated start vector (not for contrastive LRP's contrast of two maps)."""
        return self.kind != "contrastive"

    def _check_k(self, k):
        if not 1 <= k <= len(self):
            raise OptionError(f"injection boundary k must be in 1..{len(self)}, got {k}")

    # -- signals ---------------------------------------------------------------------------------
    def inject(self, V, W=None) -> torch.Tensor:
        """Signals (B, m, *shape) as the chain's signal: itself, or for DeepLIFT ± chains the pair [V, V] (tied)
        or [V, W] (independent parts)."""
        V = V.to(self.dtype)
        if not self.paired:
            if W is not None:
                raise OptionError("independent (+, −) injections exist only for DeepLIFT ± chains")
            return V
        return torch.stack([V, V if W is None else W.to(self.dtype)], dim=2)

    def signals(self, R, k: int, *, inject: str = "post", measure: str = "post"):
        """Yield (j, signal read at boundary j) for j = k−1 … 0 from R injected at boundary k.

        R: (B, m, *shapes[k]) (DeepLIFT ± chains: (B, m, 2, *shapes[k]), see :meth:`inject`)."""
        self._check_k(k)
        lead = 3 if self.paired else 2
        X = R.to(self.dtype)
        X = X if inject == "pre" else self.stages[k - 1].act(X)       # the pre-activation signal of stage k−1
        for j in range(k - 1, -1, -1):
            X = self.stages[j].lin(X)
            X = X.reshape(tuple(X.shape[:lead]) + self.shapes[j])     # (a flatten between stages)
            if j == 0:
                yield j, self.read(0, X)
                break
            A = self.stages[j - 1].act(X)                               # through the activation of stage j−1
            yield j, self.read(j, A if (measure == "pre" and self.space != "deeplift") else X)
            X = A

    def read(self, j: int, X):
        """The measured quantity of a signal X at boundary j: X itself, ×x at the input of gradient × input,
        DeepLIFT's contributions m⁺ ⊙ Δh⁺ + m⁻ ⊙ Δh⁻."""
        if self.space == "deeplift":
            dt = X.dtype
            if not self.paired:
                return X * self.deltas[j].to(dt)
            dp, dm = self.deltas[j]
            return X[:, :, 0] * dp.to(dt) + X[:, :, 1] * dm.to(dt)
        if j == 0 and self.input_scale is not None:
            X = X * self.input_scale.to(X.dtype)
        return X

    def apply(self, R, k: int | None = None, *, inject: str = "post"):
        """The quantity read at the input (B, m, *shapes[0]) for R injected at boundary k (default: the logits)."""
        k = len(self) if k is None else k
        out = None
        for _, out in self.signals(R, k, inject=inject):
            pass
        return out

    def start(self, targets) -> torch.Tensor:
        """r_L per image for logit targets[b] (B,): f_k(x)·e_k (relevance), e_k (gradient, DeepLIFT), [e_k; e_k]
        (DeepLIFT ± chains); shape (B, 1, K) ((B, 1, 2, K))."""
        t = torch.as_tensor(np.asarray(targets), dtype=torch.int64).reshape(-1, 1)
        B, K = self.logits.shape
        e = torch.zeros((B, K), dtype=torch.float64).scatter_(1, t, 1.0)
        if self.space == "relevance":
            e = e * self.logits
        return self.inject(e.reshape(B, 1, K))

    def explain(self, targets) -> torch.Tensor:
        """The method's explanation of logit targets[b] for every image: (B, *input shape)."""
        if self.kind == "contrastive":
            t = torch.as_tensor(np.asarray(targets), dtype=torch.int64).reshape(-1, 1)
            B, K = self.logits.shape
            m = torch.zeros((B, K), dtype=torch.float64).scatter_(1, t, 1.0)
            R = torch.stack([self.logits * m, self.logits * (1 - m)], dim=1)
            maps = self.apply(self.inject(R)).to(torch.float64)
            return contrast(maps[:, 0], maps[:, 1], self.clip)
        return self.apply(self.start(targets))[:, 0]

    # -- one chain -------------------------------------------------------------------------------
    def chain(self, *, materialize: bool = True, dtype=np.float64) -> Chain:
        """The chain of the one input (B = 1): the stage operators, or their explicit matrices (``materialize``),
        stored in ``dtype``; rectified and DeepLIFT chains are always materialized (their operators are the
        linear parts, resp. 2×2 blocks)."""
        if self.batch != 1:
            raise InputError(f"a chain is the backward pass of one input; this batch holds {self.batch} "
                             "(use the batch's signals, or extract one input)")
        x = self.x.reshape(-1).to(torch.float64).numpy()
        common = dict(names=self.names, shapes=self.shapes, input_shape=(1,) + self.shapes[0], x=x,
                      logits=self.logits.reshape(-1).to(torch.float64).numpy(), rule=self.rule, options=self.options,
                      space=self.space, layer_rules=self.layer_rules, meta=self.meta)
        if self.kind == "rectified":
            ops = [_linear_part(s).astype(dtype) for s in self.stages]
            return RectifiedChain(ops, stages=self.stages, **common)
        if self.kind == "deeplift":
            ops = [s.astype(dtype).materialize() for s in self.stages]
            return DeepLiftChain(ops, reference=flat_numpy(self.reference),
                                 reference_logits=self.reference_logits.reshape(-1).to(torch.float64).numpy(),
                                 delta_input=tuple(flat_numpy(d) for d in self.delta_input), variant=self.variant,
                                 **common)
        ops = [s.astype(dtype) for s in self.stages]
        if materialize:
            ops = [op.materialize() for op in ops]
        if self.input_scale is not None:
            ops[0] = scale_rows(ops[0], flat_numpy(self.input_scale))
        masks = [flat_numpy(m) for m in self.masks]
        chain = Chain(ops, layer_stats=self.layer_stats, masks=masks, **common)
        if self.kind == "contrastive":
            return ContrastiveChain.of(chain, rule=self.rule, clip=self.clip)
        return chain


def _linear_part(stage):
    """The chain operator of a rectified stage: its linear part, materialized (a block: a RectifiedResidual)."""
    if isinstance(stage, ResidualOperator):
        branches = [[_linear_part(s) for s in b] for b in stage.branches]
        return RectifiedResidual(branches, stage.shape[1], stage.names, stage.layer_rules)
    return stage.linear_part().materialize()
