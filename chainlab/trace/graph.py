"""Reading a torch model's forward: ops in forward order, residual sums found as nested blocks.

:func:`linearize` traces the model with ``torch.fx`` (a plain ``nn.Sequential`` that fx cannot
trace is walked instead) and returns its operations in forward order as ``(path, op)`` pairs:
``op`` is a module, the tag ``"relu"``/``"flatten"``/``"identity"`` for functional operations,
an :class:`~.activations.Activation` for functional softplus/silu, or a :class:`ResidualSpec` for a
residual block — a value h used by exactly two operations whose paths (chains of single-input
operations, possibly containing nested blocks) end in one addition ``a + b``; a path that is the
addition itself is the identity shortcut.  Anything else (several inputs, branches that never
rejoin, unknown functions) raises :class:`~chainlab.errors.UnsupportedLayerError` naming the node.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UnsupportedLayerError
from .activations import Activation

__all__ = ["SUPPORTED", "ResidualSpec", "linearize", "flat_ops"]

SUPPORTED = (
    "Linear, Conv2d (zero padding), ReLU, Softplus, SiLU, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, "
    "Dropout (eval), Identity, BatchNorm1d/BatchNorm2d directly after a Linear/Conv2d (folded), residual "
    "additions of two branches, and the functions relu, softplus, silu, flatten, view, reshape, dropout (eval)"
)

MODULES = (nn.Linear, nn.Conv2d, nn.ReLU, nn.Softplus, nn.SiLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
           nn.Flatten, nn.Dropout, nn.Identity, nn.BatchNorm1d, nn.BatchNorm2d)
_RELU_FUNCS = {torch.relu, torch.relu_, F.relu}
_FLATTEN_FUNCS = {torch.flatten, torch.reshape}
_DROPOUT_FUNCS = {F.dropout}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_AUX_METHODS = {"size", "dim"}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}


@dataclass
class ResidualSpec:
    """A sum of branches found in the fx graph: ``branches[t]`` is branch t's op list ([] = identity)."""

    name: str
    branches: list = field(default_factory=list)


# what torch.fx raises on a forward it cannot trace: data-dependent control flow (TraceError), proxies used as
# values (TypeError, RuntimeError, AttributeError), unsupported operations (NotImplementedError), the forward's own
# checks (ValueError, AssertionError, KeyError, IndexError) — the user's model, not chainlab, decides which
TRACE_ERRORS = (torch.fx.proxy.TraceError, TypeError, RuntimeError, AttributeError, NotImplementedError, ValueError,
                AssertionError, KeyError, IndexError)


def linearize(model: nn.Module) -> list[tuple[str, object]]:
    """The model's operations in forward order as (path, module) or (path, 'relu'|'flatten'|'identity')."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except TRACE_ERRORS as exc:  # the user's forward cannot be traced symbolically
        if isinstance(model, nn.Sequential):
            return _walk_sequential(model, "")
        raise UnsupportedLayerError(
            f"cannot read the forward of {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            f"chainlab needs a forward that is a plain chain of: {SUPPORTED}"
        ) from None
    ops: list[tuple[str, object]] = []
    current = None
    aux = set()
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise UnsupportedLayerError(f"{type(model).__name__}.forward takes more than one input; not supported")
            current = node
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise UnsupportedLayerError(
                    f"{type(model).__name__}.forward does not return the result of its last layer; not supported"
                )
            continue
        if node.op == "get_attr":
            aux.add(node)
            continue
        if _is_aux(node, aux):
            aux.add(node)
            continue
        data_args = [a for a in node.args if isinstance(a, torch.fx.Node) and a not in aux]
        if not data_args or data_args[0] is not current or len(data_args) > 1 or len(_data_users(current, aux)) > 1:
            # the graph forks: residual blocks (sums of branches)
            return _linearize_graph(gm, model)
        ops.append(_node_op(node, gm))
        current = node
    return ops


def _data_users(node, aux) -> list:
    return [u for u in node.users if u not in aux]


def _node_op(node, gm) -> tuple[str, object]:
    """(path, module) or (path, 'relu'|'flatten'|'identity') of one single-input fx node."""
    if node.op == "call_module":
        return _module_op(str(node.target), gm.get_submodule(node.target))
    if node.op == "call_function" and node.target in _RELU_FUNCS:
        return (node.name, "relu")
    if node.op == "call_function" and node.target is F.softplus:
        beta = node.kwargs.get("beta", node.args[1] if len(node.args) > 1 else 1.0)
        threshold = node.kwargs.get("threshold", node.args[2] if len(node.args) > 2 else 20.0)
        return (node.name, Activation("softplus", float(beta), float(threshold)))
    if node.op == "call_function" and node.target is F.silu:
        return (node.name, Activation("silu"))
    if node.op == "call_function" and node.target in _FLATTEN_FUNCS:
        return (node.name, "flatten")
    if node.op == "call_function" and node.target in _DROPOUT_FUNCS:
        if node.kwargs.get("training", False):
            raise UnsupportedLayerError(f"functional dropout '{node.name}' in training mode is not supported")
        return (node.name, "identity")
    if node.op == "call_method" and node.target == "relu":
        return (node.name, "relu")
    if node.op == "call_method" and node.target in _FLATTEN_METHODS:
        return (node.name, "flatten")
    raise UnsupportedLayerError(
        f"operation '{node.name}' ({_describe_node(node, gm)}) is not supported; supported: {SUPPORTED}"
    )


def _module_op(path: str, m: nn.Module) -> tuple[str, nn.Module]:
    if not isinstance(m, MODULES):
        raise UnsupportedLayerError(f"module '{path}' of type {type(m).__name__} is not supported; supported: {SUPPORTED}")
    return (path, m)


def _is_aux(node, aux) -> bool:
    """Size/shape bookkeeping (x.size(0), x.shape[0]) that only feeds reshape arguments."""
    if node.op == "call_method" and node.target in _AUX_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr:
        return True
    if node.op == "call_function" and node.target is operator.getitem:
        return all(a in aux for a in node.args if isinstance(a, torch.fx.Node))
    return False


def _describe_node(node, gm) -> str:
    if node.op == "call_module":
        return f"module '{node.target}' of type {type(gm.get_submodule(node.target)).__name__}"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)}"
    return f"method .{node.target}()"


def _walk_sequential(seq: nn.Sequential, prefix: str):
    ops = []
    for name, child in seq.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            ops.extend(_walk_sequential(child, path + "."))
        else:
            ops.append(_module_op(path, child))
    return ops


def _is_add(node) -> bool:
    return ((node.op == "call_function" and node.target in _ADD_FUNCS)
            or (node.op == "call_method" and node.target in _ADD_METHODS))


def _linearize_graph(gm, model) -> list:
    """Ops of a traced model whose graph forks: plain ops as ``(path, op)`` and blocks as ``(name, ResidualSpec)``.

    A *block* is a value h used by exactly two operations whose paths (chains of single-input
    operations, possibly containing nested blocks) end in one addition ``a + b`` (``+``, ``+=``,
    ``torch.add`` without ``alpha``).  A path that is the addition itself is the identity shortcut.
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
        elif n.op == "get_attr" or _is_aux(n, aux):
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
        return _node_op(u, gm)

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
    paths = [p for b in branches for p, _ in flat_ops(b)]
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


def flat_ops(ops):
    for path, op in ops:
        if isinstance(op, ResidualSpec):
            for b in op.branches:
                yield from flat_ops(b)
        else:
            yield path, op
