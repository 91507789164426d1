"""A chain: the backward pass of one input under one rule as a product of operators.

Stored input side first, ``chain[0] = M_1``, …, ``chain[L-1] = M_L``, with
``chain[k].shape == (n_k, n_(k+1))`` and r_in = M @ r_out.  The explanation of
logit k is

    M_1 M_2 ⋯ M_L r_L,   r_L = f_k(x)·e_k (relevance rules) or e_k (gradient-space rules),

reshaped to the input's shape.  ``to_dense()`` is the full product
P_L = M_1 ⋯ M_L (n_input × n_output): its column k is the input signal for r_L = e_k.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import products as _products
from .errors import NotLinearError
from .operators import Operator

__all__ = ["Chain"]


def _as_columns(R):
    """(R as a 2-D array of columns, whether R was one vector)."""
    R = np.asarray(R)
    return (R.reshape(-1, 1), True) if R.ndim == 1 else (R, False)


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
    linear : bool                 False when the backward is not a matrix product (guided BP, deconv,
                                  RectGrad): then to_dense() and products raise NotLinearError
    """

    linear = True
    not_linear_reason = "this chain's backward pass is not a product of matrices"

    def __init__(self, operators, *, names, shapes, input_shape, x, logits, rule, options, space,
                 layer_rules=None, meta=None):
        self.operators: list[Operator] = list(operators)
        for k in range(len(self.operators) - 1):
            a, b = self.operators[k], self.operators[k + 1]
            if a.shape[1] != b.shape[0]:
                raise ValueError(f"operators {k} {a.shape} and {k + 1} {b.shape} do not chain")
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

    # -- sequence protocol ------------------------------------------------------------------
    def __len__(self):
        return len(self.operators)

    def __getitem__(self, i):
        return self.operators[i]

    def __iter__(self):
        return iter(self.operators)

    def __repr__(self):
        return (f"<Chain rule={self.rule!r} space={self.space} layers={len(self)} "
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
        (``basis``, see :func:`chainlab.products.stream_apply`)."""
        layers = self._signal_layers(R, start, stop)
        if not layers:
            return np.asarray(R)
        R2, vec = _as_columns(R)
        R2 = _products.stream_apply(self.operators[start:stop], R2, max_memory=max_memory, basis=basis)
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
                raise ValueError(
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
        U2, vec = _as_columns(U)
        if U2.ndim != 2 or U2.shape[0] != ops[0].shape[0]:
            raise ValueError(
                f"rapply(start={start}, stop={stop}) needs U with {ops[0].shape[0]} rows (the inputs of "
                f"operator {start}, '{self.names[start]}'), got shape {U.shape}"
            )
        for op in ops:
            U2 = op.rmatmat(U2)
        return U2.reshape(-1) if vec else U2

    def product(self, start: int = 0, stop: int | None = None, *,
                dense_above: float = _products.DENSE_ABOVE) -> Operator:
        """M_(start+1) ⋯ M_stop (``self[start:stop]``) as one operator: SparseOperator (CSC) while the product's
        density stays ≤ ``dense_above``, DenseOperator above (:func:`chainlab.products.chain_product`)."""
        self.require_linear("product()")
        return _products.chain_product(self, start, stop, dense_above=dense_above)

    def prefix_products(self, normalize: bool = True, start: int = 0, stop: int | None = None, *,
                        dense_above: float = _products.DENSE_ABOVE):
        """Iterator of PrefixProduct(k, matrix, log_scale), P_k = M_(start+1) ⋯ M_k = exp(log_scale)·matrix for
        k = start+1 … stop, renormalized per step when ``normalize`` (:func:`chainlab.products.prefix_products`)."""
        self.require_linear("prefix_products()")
        return _products.prefix_products(self, normalize, start, stop, dense_above=dense_above)

    def to_dense(self) -> np.ndarray:
        """The full product M_1 ⋯ M_L as a numpy array (n_input, n_output)."""
        self.require_linear("to_dense()")
        return self.apply(np.eye(self.n_output, dtype=self.dtype))

    def require_linear(self, what: str):
        """Raise NotLinearError (naming ``what`` and the reason) unless the chain is a matrix product."""
        if not self.linear:
            raise NotLinearError(f"{what} is not available: {self.not_linear_reason}")

    # -- explanations ------------------------------------------------------------------------
    def start_vector(self, target: int | None = None) -> np.ndarray:
        """r_L: f_k(x)·e_k for relevance rules, e_k for gradient-space rules (k = predicted class by default)."""
        k = self.predicted if target is None else int(target)
        if not 0 <= k < self.n_output:
            raise ValueError(f"target {k} is not a logit index (the model has {self.n_output} outputs)")
        r = np.zeros(self.n_output, dtype=self.dtype)
        r[k] = self.logits[k] if self.space == "relevance" else 1.0
        return r

    def explain(self, target: int | None = None) -> np.ndarray:
        """The rule's explanation of logit ``target`` in the shape of x (batch dimension included)."""
        return self.apply(self.start_vector(target)).reshape(self.input_shape)
