"""Residual networks: a block h_out = ρ(Σ_t f_t(h)) becomes ONE chain operator.

A residual block adds T branches (T = 2 in ResNets: the residual branch g and the shortcut,
the identity or a 1×1 conv + BN) and optionally applies a ReLU ρ after the sum:

    z = Σ_t f_t(h),   h_out = ρ(z),   f_t = (stages of branch t),  f_t = id for an identity shortcut.

Each branch t has its own chain of layer operators M_t1 … M_tK (input side first, built with
the layer rules) and their product P_t = M_t1 ⋯ M_tK (n_in × n_out; P_t = I for the identity).
The block's operator (n_in × n_out, r_in = M r_out) is

    M = Σ_t diag(ρ_t) · P_t · diag(c_t)                                          (1)

* Gradient (gradient space): c_t = 1[z > 0] (the post-add ReLU mask; ones without ReLU) for
  every t, so M = (P_shortcut + P_branch) diag(1[z > 0]).  This is Sixt et al. 2020, eq. 3:
  the gradient of h_(l+1) = h_l + g(h_l) is (I + G_(∂g/∂h_l)) — here transposed into our
  r_in = M r_out convention and with the shortcut matrix in place of I for a downsampling
  shortcut (1×1 conv + BN folded), then the ReLU mask after the add.
* LRP-type rules (relevance space; the ReLU is the identity there): the relevance R at the sum
  z = Σ_t z_t (z_t = f_t(h), the branch outputs) is split between the branches, then each branch
  propagates its share with its own layer rules:
      residual="proportional" (default):  c_t = z_t / s(z)      (zennit's SumSingle / Norm rule),
      residual="equal":                   c_t = 1 / T,
  with s(z) = z + ε·sign0(z) the stabilizer.  Σ_t c_t = z/s(z) ≈ 1, so a conserving branch rule
  (z⁺ with bias="none": column sums 1) keeps the block's column sums at 1 up to ε.

With bias="full" the block's ``bias_relevance`` collects the biases of the inner layers:
b_block = Σ_t c_t ⊙ Σ_k (M_t(k+1) ⋯ M_tK)ᵀ b_tk, so colsum(M) + b_block = z/s(z) for conserving rules.

This module holds
* :class:`ResidualSpec` and :func:`linearize_graph`: the torch.fx graph analysis that finds
  blocks (a fork of one value into two paths that meet again in an addition);
* :class:`ResidualOperator` (kind ``"residual"``): the sum of products (1) with row/column scalings,
  matrix-free through ``matmat``/``rmatmat`` (each factor is any Operator, implicit ones too) and
  materializable through ``to_sparse``/``to_dense``;
* :func:`block_operator`: (1) for one traced block, given a builder for the inner stages.
"""
from __future__ import annotations

import operator as _op
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from .errors import UnsupportedLayerError
from .operators import Operator

__all__ = ["SPLITS", "ResidualSpec", "ResidualOperator", "ProductTerm", "block_operator", "linearize_graph",
           "walk_stages"]

SPLITS = ("proportional", "equal")

_ADD_FUNCS = {_op.add, _op.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}


# ---------------------------------------------------------------------------------------------
# torch.fx graph → nested op lists


@dataclass
class ResidualSpec:
    """A sum of branches found in the fx graph: ``branches[t]`` is branch t's op list ([] = identity)."""

    name: str
    branches: list = field(default_factory=list)


def _is_add(node) -> bool:
    return ((node.op == "call_function" and node.target in _ADD_FUNCS)
            or (node.op == "call_method" and node.target in _ADD_METHODS))


def linearize_graph(gm, model, node_op, is_aux) -> list:
    """Ops of a traced model whose graph forks: plain ops as ``(path, op)`` and blocks as ``(name, ResidualSpec)``.

    A *block* is a value h used by exactly two operations whose paths (chains of single-input
    operations, possibly containing nested blocks) end in one addition ``a + b`` (``+``, ``+=``,
    ``torch.add`` without ``alpha``).  A path that is the addition itself is the identity shortcut.
    ``node_op(node, gm) -> (path, op)`` classifies single-input nodes (from :mod:`chainlab.trace`);
    ``is_aux(node, aux)`` recognizes size/shape bookkeeping.
    """
    name = type(model).__name__
    aux, placeholder, output = set(), None, None
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            if placeholder is not None:
                raise UnsupportedLayerError(f"{name}.forward takes more than one input; not supported")
            placeholder = n
        elif n.op == "output":
            output = n
        elif n.op == "get_attr" or is_aux(n, aux):
            aux.add(n)
    used_names: set = set()

    def users(n):
        return [u for u in n.users if u not in aux]

    def data_args(n):
        found = []
        torch.fx.node.map_arg((n.args, n.kwargs), lambda a: found.append(a) if a not in aux else None)
        return found

    def single(u, cur):
        args = data_args(u)
        if len(args) != 1 or args[0] is not cur:
            raise UnsupportedLayerError(
                f"operation '{u.name}' ({getattr(u.target, '__name__', u.target)}) combines {len(args)} values; "
                "chainlab supports chains of single-input layers and residual additions of two branches"
            )
        return node_op(u, gm)

    def walk(cur, in_branch):
        """Follow single-user paths from ``cur``; return (ops, last node, join add or None)."""
        ops = []
        while True:
            us = users(cur)
            if len(us) == 1:
                u = us[0]
                if u.op == "output":
                    if in_branch:
                        raise UnsupportedLayerError(f"a branch of {name} that starts before '{cur.name}' never "
                                                    "rejoins the main path through an addition")
                    return ops, cur, None
                if _is_add(u):
                    if in_branch:
                        return ops, cur, u
                    raise UnsupportedLayerError(
                        f"addition '{u.name}' in {name} does not join two branches of one value (only residual "
                        "sums f(h) + g(h) of the same h are supported)"
                    )
                ops.append(single(u, cur))
                cur = u
                continue
            if len(us) == 2:
                paths = []
                for u in us:
                    if _is_add(u):
                        paths.append(([], cur, u))
                    else:
                        first = single(u, cur)
                        b_ops, last, join = walk(u, True)
                        paths.append(([first] + b_ops, last, join))
                add = paths[0][2]
                if paths[1][2] is not add:
                    raise UnsupportedLayerError(
                        f"the two paths leaving '{cur.name}' in {name} end in different additions "
                        f"('{paths[0][2].name}', '{paths[1][2].name}'); only nested residual blocks are supported"
                    )
                args = [a for a in add.args if isinstance(a, torch.fx.Node)]
                if (len(add.args) != 2 or len(args) != 2 or add.kwargs or args[0] is args[1]
                        or {args[0], args[1]} != {paths[0][1], paths[1][1]}):
                    raise UnsupportedLayerError(
                        f"addition '{add.name}' in {name} is not a plain sum of two branches (alpha=, constants or "
                        "the same value twice are not supported)"
                    )
                ordered = sorted(paths, key=lambda p: args.index(p[1]))  # branch order = order in the sum
                ops.append(_block_name(add, [p[0] for p in ordered], used_names))
                cur = add
                continue
            if not us:
                raise UnsupportedLayerError(f"value '{cur.name}' in {name} is not used; not supported")
            raise UnsupportedLayerError(
                f"value '{cur.name}' in {name} feeds {len(us)} operations "
                f"({', '.join(u.name for u in us)}); chainlab supports residual blocks of two branches"
            )

    ops, last, _ = walk(placeholder, False)
    if output is None or output.args[0] is not last:
        raise UnsupportedLayerError(f"{name}.forward does not return the result of its last layer; not supported")
    return ops


def _block_name(add, branches, used) -> tuple:
    paths = [p for b in branches for p, _ in _flat_ops(b)]
    parts = [p.split(".") for p in paths if "." in p]
    prefix = []
    if parts:
        for tokens in zip(*parts):
            if len(set(tokens)) != 1:
                break
            prefix.append(tokens[0])
        # a bare module name (the last token of every path) is not a block name
        if parts and all(len(p) == len(prefix) for p in parts):
            prefix = prefix[:-1]
    name = ".".join(prefix) or add.name
    if name in used:
        name = f"{name}.{add.name}"
    used.add(name)
    return (name, ResidualSpec(name, list(branches)))


def _flat_ops(ops):
    for path, op in ops:
        if isinstance(op, ResidualSpec):
            for b in op.branches:
                yield from _flat_ops(b)
        else:
            yield path, op


def walk_stages(stages, top_index=None):
    """(top-level chain index, stage) of every non-residual stage in forward order, into residual branches."""
    for i, st in enumerate(stages):
        idx = i if top_index is None else top_index
        if st.kind == "residual":
            for b in st.branches:
                yield from walk_stages(b, idx)
        else:
            yield idx, st


# ---------------------------------------------------------------------------------------------
# the operator


@dataclass
class ProductTerm:
    """diag(row) · ops[0] ⋯ ops[-1] · diag(col); ``ops == []`` is the identity (row/col: ndarray or None)."""

    ops: list
    row: np.ndarray | None = None
    col: np.ndarray | None = None


class ResidualOperator(Operator):
    """M = Σ_t diag(row_t) · A_t1 ⋯ A_tK · diag(col_t), shape (n_in, n_out) — a residual block.

    ``terms``: list of :class:`ProductTerm`; every product has shape (n_in, n_out) (an empty
    product is the identity and needs n_in == n_out).  ``matmat``/``rmatmat`` apply the factors
    one by one (no product is formed: works on implicit factors), ``to_sparse``/``to_dense``
    multiply them out.  ``branch_names``/``layer_rules``/``names``: per term, the inner layers.
    """

    kind = "residual"

    def __init__(self, terms, shape, dtype=np.float64, bias_relevance=None, names=None, layer_rules=None):
        n_in, n_out = int(shape[0]), int(shape[1])
        self.shape = (n_in, n_out)
        self.dtype = np.dtype(dtype)
        self.bias_relevance = bias_relevance
        self.terms = []
        for t, term in enumerate(terms):
            ops = list(term.ops)
            if ops:
                for k in range(len(ops) - 1):
                    if ops[k].shape[1] != ops[k + 1].shape[0]:
                        raise ValueError(f"residual term {t}: factors {k} {ops[k].shape} and {k + 1} "
                                         f"{ops[k + 1].shape} do not chain")
                got = (ops[0].shape[0], ops[-1].shape[1])
            else:
                got = (n_out, n_out) if n_in == n_out else None
            if got != self.shape:
                raise ValueError(f"residual term {t} has shape {got}, the block {self.shape}")
            row = None if term.row is None else np.asarray(term.row, dtype=self.dtype).reshape(-1)
            col = None if term.col is None else np.asarray(term.col, dtype=self.dtype).reshape(-1)
            if row is not None and row.size != n_in or col is not None and col.size != n_out:
                raise ValueError(f"residual term {t}: row/column scalings do not fit the shape {self.shape}")
            self.terms.append(ProductTerm(ops, row, col))
        self.names = names or [[] for _ in self.terms]
        self.layer_rules = layer_rules or [[] for _ in self.terms]

    # -- LinearOperator protocol ---------------------------------------------------------
    def matmat(self, V):
        V = self._check_rows(V)
        out = np.zeros((self.shape[0], V.shape[1]), dtype=np.result_type(self.dtype, V.dtype))
        for term in self.terms:
            W = V * term.col[:, None] if term.col is not None else V
            for A in reversed(term.ops):
                W = A.matmat(W)
            out += W * term.row[:, None] if term.row is not None else W
        return out

    def rmatmat(self, U):
        U = self._check_cols(U)
        out = np.zeros((self.shape[1], U.shape[1]), dtype=np.result_type(self.dtype, U.dtype))
        for term in self.terms:
            W = U * term.row[:, None] if term.row is not None else U
            for A in term.ops:
                W = A.rmatmat(W)
            out += W * term.col[:, None] if term.col is not None else W
        return out

    def to_sparse(self, format="csr"):
        if format not in ("csr", "csc"):
            raise ValueError(f"format must be 'csr' or 'csc', got {format!r}")
        total = sp.csr_matrix(self.shape, dtype=self.dtype)
        for term in self.terms:
            P = sp.identity(self.shape[0], dtype=self.dtype, format="csr")
            for A in term.ops:
                P = P @ A.to_sparse("csr")
            if term.row is not None:
                P = sp.diags(term.row) @ P
            if term.col is not None:
                P = P @ sp.diags(term.col)
            total = total + P
        total = total.asformat(format)
        total.eliminate_zeros()
        return total.astype(self.dtype, copy=False)

    def to_dense(self):
        return self.to_sparse("csr").toarray()

    @property
    def nnz(self) -> int:
        """Stored entries of the factors (the block is kept as a sum of products, not multiplied out)."""
        return int(sum(A.nnz for t in self.terms for A in t.ops)
                   + sum(x.size for t in self.terms for x in (t.row, t.col) if x is not None))

    @property
    def T(self):
        terms = [ProductTerm([A.T for A in reversed(t.ops)], t.col, t.row) for t in self.terms]
        return ResidualOperator(terms, self.shape[::-1], self.dtype)

    def astype(self, dtype):
        terms = [ProductTerm([A.astype(dtype) for A in t.ops], t.row, t.col) for t in self.terms]
        return ResidualOperator(terms, self.shape, dtype, self.bias_relevance, self.names, self.layer_rules)

    def scale_rows(self, v) -> "ResidualOperator":
        """diag(v) @ self (used for gradient × input when a block is the first operator)."""
        v = np.asarray(v, dtype=self.dtype).reshape(-1)
        terms = [ProductTerm(t.ops, v if t.row is None else v * t.row, t.col) for t in self.terms]
        return ResidualOperator(terms, self.shape, self.dtype, self.bias_relevance, self.names, self.layer_rules)

    def __repr__(self):
        inner = " + ".join("I" if not t.ops else "·".join(A.kind for A in t.ops) for t in self.terms)
        return f"<ResidualOperator {self.shape[0]}x{self.shape[1]} {self.dtype.name} [{inner}]>"


# ---------------------------------------------------------------------------------------------
# one block


def block_operator(stage, record, *, space: str, build, split: str = "proportional",
                   stabilizer: float = 1e-6, dtype=np.float64, rule_name=None) -> ResidualOperator:
    """The operator (1) of the residual ``stage`` at ``record`` (see the module docstring).

    ``build(inner_stage, inner_record) -> Operator`` makes the operator of one inner stage with
    the layer rules (materialized or implicit: the block never multiplies its factors unless
    asked to); ``space`` is "gradient" or "relevance"; ``split`` is "proportional" or "equal".
    ``rule_name(inner_stage) -> str`` names each inner layer's rule (for ``layer_rules``).
    """
    if split not in SPLITS:
        raise ValueError(f"residual must be one of {', '.join(SPLITS)}; got {split!r}")
    if stage.kind != "residual" or record.branches is None:
        raise ValueError(f"stage {stage.describe()} is not a residual block")
    z = record.z.reshape(-1).to(torch.float64)
    h = record.x.reshape(-1).to(torch.float64)
    n_in, n_out = h.numel(), z.numel()
    n_branches = len(stage.branches)
    terms, names, rules, biases = [], [], [], []
    for b_stages, b_records in zip(stage.branches, record.branches):
        ops = [build(s, r) for s, r in zip(b_stages, b_records)]
        if space == "gradient":
            col = (z > 0).to(torch.float64) if stage.relu else torch.ones_like(z)
        elif split == "proportional":
            z_t = b_records[-1].out.reshape(-1) if b_records else h
            d = z + stabilizer * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
            col = z_t.to(torch.float64) / d
        else:
            col = torch.full_like(z, 1.0 / n_branches)
        col = col.numpy()
        terms.append(ProductTerm(ops, None, col))
        names.append([s.name for s in b_stages])
        rules.append([rule_name(s) for s in b_stages] if rule_name else [])
        # bias relevance of the inner layers, carried to the block's output columns
        if any(getattr(A, "bias_relevance", None) is not None for A in ops):
            acc = np.zeros(n_out)
            for k, A in enumerate(ops):
                if A.bias_relevance is None:
                    continue
                v = np.asarray(A.bias_relevance, dtype=np.float64)
                for B in ops[k + 1:]:
                    v = B.rmatvec(v)
                acc += v
            biases.append(col * acc)
    bias_rel = np.sum(biases, axis=0) if biases else None
    return ResidualOperator(terms, (n_in, n_out), dtype, bias_rel, names, rules)
