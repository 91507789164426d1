"""Extraction: a torch model, one input and a rule → the chain of per-layer operators.

* :mod:`.options` — :class:`ExtractOptions`, the common options, validated once;
* :mod:`.layers` — the stage operator of one stage (rule terms, pools, leading activation);
* :mod:`.residual` — a residual block as one stage operator (a sum over its branches);
* :mod:`.layerwise` — the layer-rule method (composites, rule per stage);
* :mod:`.deeplift` (:mod:`.deeplift_pm`), :mod:`.rectified`, :mod:`.contrastive` — the whole-chain methods
  (DeepLIFT as the deeplift package computes it, and its ± variant; guided BP, deconv, RectGrad; contrastive LRP);
* :mod:`.methods` — the static table of whole-chain methods;
* :mod:`.api` — :func:`extract` (one input → its chain) and :func:`extract_batch` (B inputs → a
  :class:`~chainlab.chain.BatchChain`): the same stage operators, built once per method at any batch size
  (:mod:`.batch` re-exports the batched entry point).

(The package is called ``extraction`` so that ``chainlab.extract`` stays the function.)

May import: :mod:`chainlab.rules`, :mod:`chainlab.trace`, :mod:`chainlab.chain`, :mod:`chainlab.linalg`,
:mod:`chainlab.options`, :mod:`chainlab.errors`.
"""
from ..chain import BatchChain
from .api import batch_supported, extract, extract_batch, forward_batch, method_names
from .methods import METHODS, Method
from .options import COMMON, ExtractOptions
from .residual import DeepLiftResidual, ResidualBlock

__all__ = ["extract", "extract_batch", "forward_batch", "batch_supported", "BatchChain", "method_names", "METHODS",
           "Method", "COMMON", "ExtractOptions", "ResidualBlock", "DeepLiftResidual"]
