"""Extraction: a torch model, one input and a rule → the chain of per-layer operators.

* :mod:`.options` — :class:`ExtractOptions`, the common options, validated once;
* :mod:`.layers` — the operator of one stage (rule terms, pools, leading activation);
* :mod:`.residual` — a residual block as one operator (a Sum of Products);
* :mod:`.layerwise` — the layer-rule method (composites, rule per stage);
* :mod:`.deeplift`, :mod:`.rectified`, :mod:`.contrastive` — the whole-chain methods (DeepLIFT; guided BP,
  deconv, RectGrad; contrastive LRP);
* :mod:`.methods` — the static table of whole-chain methods;
* :mod:`.api` — :func:`extract`.

(The package is called ``extraction`` so that ``chainlab.extract`` stays the function.)

May import: :mod:`chainlab.rules`, :mod:`chainlab.trace`, :mod:`chainlab.chain`, :mod:`chainlab.linalg`,
:mod:`chainlab.options`, :mod:`chainlab.errors`.
"""
from .api import extract, method_names
from .methods import METHODS, Method
from .options import COMMON, ExtractOptions
from .residual import DeepLiftResidual, ResidualBlock

__all__ = ["extract", "method_names", "METHODS", "Method", "COMMON", "ExtractOptions", "ResidualBlock",
           "DeepLiftResidual"]
