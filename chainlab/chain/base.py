"""A chain: the backward pass of one input under one rule as a product of operators.

Stored input side first, ``chain[0] = M_1``, …, ``chain[L-1] = M_L``, with
``chain[k].shape == (n_k, n_(k+1))`` and r_in = M @ r_out.  The explanation of logit k is

    M_1 M_2 ⋯ M_L r_L,   r_L = f_k(x)·e_k (relevance rules) or e_k (gradient-space rules),

reshaped to the input's shape; with ``of="logprob"`` the start vector is e_k − softmax(f(x)), the
gradient of log p_k with respect to the logits.  ``to_dense()`` is the full product P_L = M_1 ⋯ M_L
(n_input × n_output): its column k is the input signal for r_L = e_k.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from ..errors import InputError, NotLinearError
from ..linalg import BlockOperator, Operator, as_operator, products

__all__ = ["Chain", "as_columns", "check_target"]

OF = ("logit", "logprob")


def as_columns(R):
    """(R as a 2-D array of columns, whether R was one vector)."""
    R = np.asarray(R)
    return (R.reshape(-1, 1), True) if R.ndim == 1 else (R, False)


def check_target(target, n_output: int, default: int) -> int:
    """A logit index: None → ``default``; an int (not a bool, not a float or a string) in [0, n_output)."""
    if target is None:
        return int(default)
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise InputError(f"target must be an integer logit index, got {target!r} ({type(target).__name__})")
    k = int(target)
    if not 0 <= k < n_output:
        raise InputError(f"target {k} is not a logit index (the model has {n_output} outputs)")
    return k


class Chain(Sequence):
    """Operators M_1 … M_L of one input and one rule, plus what is needed to read them.

    Attributes
    ----------
    operators : list[Operator]
    names : list[str]             module path of each operator's layer
    layer_rules : list[str]       rule applied at each operator
    shapes : list[tuple]          signal shape at each boundary: shapes[0] is the input's shape
                                  (without batch dimension), shapes[k] the output of operator k-1
    input_shape : tuple           shape of x with batch dimension, (1, C, H, W) or (1, n)
    x : ndarray                   the input, flat (n_input,), float64
    logits : ndarray              f(x), (n_output,), float64
    rule : str                    rule or composite name;  options : dict of every option used
    space : "relevance" | "gradient" | "deeplift"
    paired : bool                 signals are stacked (+, −) pairs [m⁺; m⁻] of 2n rows (DeepLIFT's ± chains of
                                  2×2 block operators; default: inferred from the operators)
    layer_stats : list[dict]      per operator what the a-priori bounds need and extraction knows:
                                  ``weight_norm_inf`` (max row abs sum of the layer weight, Linear/Conv2d)
                                  and ``input_norm_inf`` (max |x_l| of the layer input); {} elsewhere
    masks : list[ndarray | None]  per operator its output-side diagonal d_l (n_out,) when the operator factors
                                  as M_l = L_l diag(d_l), L_l the stage's linear part: in gradient space d_l is
                                  ρ'(z_l) of the activation after stage l (the ReLU mask 1[z_l > 0]) or a rule's
                                  soft mask; None where no activation follows the stage or the rule's matrix
                                  has no such factor (relevance rules, whole-chain methods)
    linear : bool                 False when the backward is not a matrix product (guided BP, deconv,
                                  RectGrad): then to_dense() and products raise NotLinearError
    """

    linear = True
    not_linear_reason = "this chain's backward pass is not a product of matrices"

    def __init__(self, operators, *, names, shapes, input_shape, x, logits, rule, options, space,
                 layer_rules=None, meta=None, layer_stats=None, masks=None, paired=None):
        self.operators: list[Operator] = list(operators)
        for k in range(len(self.operators) - 1):
            a, b = self.operators[k], self.operators[k + 1]
            if a.shape[1] != b.shape[0]:
                raise InputError(f"operators {k} {a.shape} and {k + 1} {b.shape} do not chain")
        self.names = list(names)
        self.shapes = [tuple(s) for s in shapes]
        self.input_shape = tuple(input_shape)
        self.x = np.asarray(x, dtype=np.float64).reshape(-1)
        self.logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        self.rule = rule
        self.options = dict(options)
        self.space = space
        self.layer_rules = list(layer_rules) if layer_rules is not None else [rule] * len(self.operators)
        self.meta = dict(meta or {})
        self.layer_stats = [dict(s) for s in layer_stats] if layer_stats is not None else [{} for _ in self.operators]
        self.paired = (space == "deeplift" and bool(self.operators) and isinstance(self.operators[-1], BlockOperator)
                       if paired is None else bool(paired))
        self.masks = [None] * len(self.operators) if masks is None else [
            None if m is None else np.asarray(m, dtype=np.float64).reshape(-1) for m in masks]
        if len(self.masks) != len(self.operators):
            raise InputError(f"{len(self.masks)} masks for {len(self.operators)} operators")
        for k, m in enumerate(self.masks):
            if m is not None and m.size != self.operators[k].shape[1]:
                raise InputError(f"mask {k} has {m.size} values, operator {k} has {self.operators[k].shape[1]} outputs")

    # -- sequence protocol ------------------------------------------------------------------
    def __len__(self):
        return len(self.operators)

    def __getitem__(self, i):
        return self.operators[i]

    def __iter__(self):
        return iter(self.operators)

    def __repr__(self):
        return (f"<{type(self).__name__} rule={self.rule!r} space={self.space} layers={len(self)} "
                f"{self.n_input}->{self.n_output} predicted={self.predicted}>")

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_input(self) -> int:
        return self.operators[0].shape[0]

    @property
    def n_output(self) -> int:
        return self.operators[-1].shape[1]

    @property
    def dtype(self):
        return self.operators[0].dtype

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.logits))

    # -- products ----------------------------------------------------------------------------
    def apply(self, R, start: int = 0, stop: int | None = None, *, max_memory: float | None = None,
              basis: bool | None = None):
        """M_start ⋯ M_(stop−1) @ R for R of shape (n_out of M_(stop−1), k) or (n,).

        Many columns are streamed in blocks so that intermediate signals stay under ``max_memory`` bytes
        (default 2 GiB); with more columns than rows R is applied to the propagated identity
        (``basis``, see :func:`chainlab.linalg.products.stream_apply`)."""
        layers = self._signal_layers(R, start, stop)
        if not layers:
            return np.asarray(R)
        R2, vec = as_columns(R)
        R2 = products.stream_apply(self.operators[start:stop], R2, max_memory=max_memory, basis=basis)
        return R2.reshape(-1) if vec else R2

    def _signal_layers(self, R, start, stop) -> range:
        """Indices of the operators M_start … M_(stop−1) (Python slice semantics), after checking that R
        has as many rows as the outputs of the last of them (apply's contract); empty range: nothing to do."""
        layers = range(len(self))[start:stop]
        if layers:
            last = layers[-1]
            R = np.asarray(R)
            n = self.operators[last].shape[1]
            if R.ndim not in (1, 2) or R.shape[0] != n:
                raise InputError(
                    f"apply(start={start}, stop={stop}) needs R with {n} rows (the outputs of "
                    f"operator {last}, '{self.names[last]}'), got shape {R.shape}"
                )
        return layers

    def rapply(self, U, start: int = 0, stop: int | None = None):
        """(M_start ⋯ M_(stop−1))ᵀ @ U = M_(stop−1)ᵀ ⋯ M_startᵀ @ U for U of shape (n_in of M_start, k) or (n,).

        The transpose of :meth:`apply`, factor by factor through each operator's ``rmatmat`` (never
        materializes anything, so it works on implicit and residual operators)."""
        self.require_linear("rapply()")
        ops = self.operators[start:stop]
        U = np.asarray(U)
        if not ops:
            return U
        U2, vec = as_columns(U)
        if U2.ndim != 2 or U2.shape[0] != ops[0].shape[0]:
            raise InputError(
                f"rapply(start={start}, stop={stop}) needs U with {ops[0].shape[0]} rows (the inputs of "
                f"operator {start}, '{self.names[start]}'), got shape {U.shape}"
            )
        for op in ops:
            U2 = op.rmatmat(U2)
        return U2.reshape(-1) if vec else U2

    def _range(self, start, stop, what):
        L = len(self)
        stop = L if stop is None else stop
        if not (0 <= start < stop <= L):
            raise InputError(f"{what}: need 0 <= start < stop <= {L} (the chain's length), got start={start}, "
                             f"stop={stop}")
        return start, stop

    def product(self, start: int = 0, stop: int | None = None, *,
                dense_above: float = products.DENSE_ABOVE) -> Operator:
        """M_(start+1) ⋯ M_stop (``self[start:stop]``) as one stored operator: sparse (CSC) while the product's
        density stays ≤ ``dense_above``, dense above (:func:`chainlab.linalg.products.product`)."""
        self.require_linear("product()")
        start, stop = self._range(start, stop, "product")
        return as_operator(products.product(self.operators[start:stop], dense_above=dense_above))

    def prefix_products(self, normalize: bool = True, start: int = 0, stop: int | None = None, *,
                        dense_above: float = products.DENSE_ABOVE):
        """Iterator of PrefixProduct(k, matrix, log_scale), P_k = M_(start+1) ⋯ M_k = exp(log_scale)·matrix for
        k = start+1 … stop, renormalized per step when ``normalize`` (:func:`chainlab.linalg.prefix_products`)."""
        self.require_linear("prefix_products()")
        start, stop = self._range(start, stop, "prefix_products")
        return products.prefix_products(self.operators[start:stop], normalize, first=start + 1,
                                        dense_above=dense_above)

    def to_dense(self) -> np.ndarray:
        """The full product M_1 ⋯ M_L as a numpy array (n_input, n_output)."""
        self.require_linear("to_dense()")
        return self.apply(np.eye(self.n_output, dtype=self.dtype))

    def require_linear(self, what: str):
        """Raise NotLinearError (naming ``what``, the rule and the reason) unless the chain is a matrix product."""
        if not self.linear:
            raise NotLinearError(f"{what} needs the layer matrices, but the chain of rule {self.rule!r} is not linear: "
                                 f"{self.not_linear_reason}")

    # -- the mask step and the linear step of each operator -----------------------------------
    def apply_mask(self, i: int, R):
        """d_i ⊙ R (each column of R scaled by the mask of operator i; R itself when it has none).

        With M_i = L_i diag(d_i), M_i R = L_i (d_i ⊙ R): the mask step, then the linear step."""
        m = self.masks[i]
        if m is None:
            return np.asarray(R)
        R = np.asarray(R)
        return R * (m if R.ndim == 1 else m[:, None])

    def trajectory(self, r) -> list[dict]:
        """The backward signal of start vector ``r`` (n_output,) at every boundary, output side first.

        For operator i = L−1, …, 0, with r the signal at the output of stage i (after its activation):

        * ``{"stage": i, "name": names[i], "at": "output", "shape": shapes[i+1], "signal": r}``
        * ``{"stage": i, ..., "at": "pre-activation", "signal": d_i ⊙ r}`` when operator i has a mask
          (the signal at z_i: the mask step),

        then r ← M_i r = L_i (d_i ⊙ r) (the linear step); last ``{"stage": 0, "at": "input", "shape":
        shapes[0], "signal": r}`` (= the explanation, flat).  Linear chains only."""
        self.require_linear("trajectory()")
        r = np.asarray(r)
        if r.shape != (self.n_output,):
            raise InputError(f"trajectory() needs one start vector of {self.n_output} values, got shape {r.shape}")
        out = []
        for i in reversed(range(len(self))):
            out.append({"stage": i, "name": self.names[i], "at": "output", "shape": self.shapes[i + 1], "signal": r})
            if self.masks[i] is not None:
                out.append({"stage": i, "name": self.names[i], "at": "pre-activation", "shape": self.shapes[i + 1],
                            "signal": self.apply_mask(i, r)})
            r = self.operators[i].matvec(r)
        out.append({"stage": 0, "name": self.names[0] if self.names else "", "at": "input", "shape": self.shapes[0],
                    "signal": r})
        return out

    # -- explanations ------------------------------------------------------------------------
    def start_vector(self, target: int | None = None, of: str = "logit") -> np.ndarray:
        """r_L for logit ``target`` (default: the predicted class).

        ``of="logit"``: f_k(x)·e_k for relevance rules, e_k for gradient-space rules.  ``of="logprob"``:
        e_k − softmax(f(x)), the gradient of log p_k(x) = f_k − log Σ_j exp f_j with respect to the logits
        (gradient-space rules only: it is a gradient, not a relevance)."""
        k = check_target(target, self.n_output, self.predicted)
        if of == "logprob":
            if self.space != "gradient":
                raise InputError(f"of='logprob' starts a gradient; the chain of rule {self.rule!r} propagates "
                                 f"{self.space} signals")
            z = self.logits - self.logits.max()
            p = np.exp(z) / np.exp(z).sum()
            r = -p
            r[k] += 1.0
            return r.astype(self.dtype)
        if of != "logit":
            raise InputError(f"of must be one of {', '.join(OF)}, got {of!r}")
        r = np.zeros(self.n_output, dtype=self.dtype)
        r[k] = self.logits[k] if self.space == "relevance" else 1.0
        return r

    def explain(self, target: int | None = None, of: str = "logit") -> np.ndarray:
        """The rule's explanation of logit ``target`` (or of log p_target, ``of="logprob"``) in the shape of x."""
        return self.apply(self.start_vector(target, of)).reshape(self.input_shape)
