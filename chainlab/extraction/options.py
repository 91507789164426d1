"""The options every extraction method shares: one default and one validation each.

=============  ==============================  =====================================================
option         values (default first)          meaning
=============  ==============================  =====================================================
bias           "zennit" | "none" | "full"      biases in the rules' denominators as zennit, ignored, or
                                               also reported as the relevance of an extra input neuron
                                               (``operator.bias_relevance``)
stabilizer     1e-6 (a positive number)        ε of s(z) = z + ε·sign0(z) in every denominator
dtype          "float64" | "float32"           storage type of the operators (extraction runs in float64)
avgpool        "proportional" | "gradient"     relevance-space matrix of average pools (zennit's Norm:
                                               x_i/Σx, or the pool's gradient)
materialize    True | False                    explicit dense/sparse matrices, or implicit operators
                                               applied through torch (:mod:`chainlab.linalg.implicit`)
residual       "proportional" | "equal"        relevance-space split of a residual sum between its
               | "authors"                     branches (z_t / s(z), or 1/T), or Sixt et al.'s ResNet rule for
                                               αβ rules: αβ at the sum, each branch clipped to [0, 1000], and
                                               every BatchNorm its own αβ layer (:mod:`.residual`)
=============  ==============================  =====================================================

:meth:`ExtractOptions.of` validates the options a caller gave, refusing those the method does not
take (they would be ignored — and must not be recorded as if they had been used).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..options import check_known, choice, flag, number
from ..rules import BIAS_POLICIES

__all__ = ["ExtractOptions", "COMMON", "DTYPES", "AVGPOOL_MODES", "RESIDUAL_SPLITS"]

DTYPES = {"float64": np.float64, "float32": np.float32}
AVGPOOL_MODES = ("proportional", "gradient")
RESIDUAL_SPLITS = ("proportional", "equal", "authors")


@dataclass(frozen=True)
class ExtractOptions:
    """The common options of an extraction, validated (see the module docstring)."""

    bias: str = "zennit"
    stabilizer: float = 1e-6
    dtype: str = "float64"
    avgpool: str = "proportional"
    materialize: bool = True
    residual: str = "proportional"
    given: tuple = ()          # the option names the caller passed (recorded even where they equal the default)

    @classmethod
    def of(cls, given: dict, allowed, where: str) -> "ExtractOptions":
        """Validate the common options in ``given`` that ``allowed`` lists; refuse the others (OptionError)."""
        common = {k: v for k, v in given.items() if k in COMMON}
        refused = sorted(set(common) - set(allowed))
        if refused:
            check_known(refused, (), f"{where} (it ignores them)", common=allowed)
        kw = {}
        if "bias" in common:
            kw["bias"] = choice("bias", common["bias"], BIAS_POLICIES, where)
        if "stabilizer" in common:
            kw["stabilizer"] = number("stabilizer", common["stabilizer"], where, positive=True)
        if "dtype" in common:
            d = common["dtype"]
            d = np.dtype(d).name if isinstance(d, type) or isinstance(d, np.dtype) else d
            kw["dtype"] = choice("dtype", d, tuple(DTYPES), where)
        if "avgpool" in common:
            kw["avgpool"] = choice("avgpool", common["avgpool"], AVGPOOL_MODES, where)
        if "materialize" in common:
            kw["materialize"] = flag("materialize", common["materialize"], where)
        if "residual" in common:
            kw["residual"] = choice("residual", common["residual"], RESIDUAL_SPLITS, where)
        return cls(**kw, given=tuple(sorted(common)))

    @property
    def np_dtype(self):
        return DTYPES[self.dtype]

    def record(self, names) -> dict:
        """The options ``names`` as a dict (what a chain records as used)."""
        return {k: getattr(self, k) for k in names}


COMMON = tuple(f.name for f in dataclasses.fields(ExtractOptions) if f.name != "given")
