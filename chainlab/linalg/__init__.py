"""Linear algebra of layer matrices: the operator protocol, its kinds, composition and fast products.

Holds (bottom to top):

* :mod:`.spmat` — thin wrappers over the numba kernels (SpMM, SpGEMM, dense × sparse, column norms,
  channel cosines): checks once, then one kernel call;
* :mod:`.products` — the storage policy of products of many factors (sparse while sparse, dense
  above a density), prefix products with a log-scale, streamed application;
* :mod:`.operators` — the protocol (public ``matmat``/``rmatmat`` check once and call the kind's
  ``_matmat``/``_rmatmat``; ``to_csc`` is the hook products use), the stored kinds dense and sparse,
  and matrix-free composition: :class:`Sum`, :class:`Product`, :class:`Diagonal`, :class:`Transposed`;
* :mod:`.conv`, :mod:`.pool` — convolution and pooling layers as sparse matrices (geometry, builders);
* :mod:`.block` — 2×2 block operators on (+, −) signal pairs (DeepLIFT) and sums of their products;
* :mod:`.implicit` — stage operators: one layer's backward at B inputs applied with torch (per-image factors
  with an optional batch dimension), the explicit matrix of one image on request;
* :mod:`.pairs` — DeepLIFT's stage operators on (+, −) multiplier pairs;
* :mod:`.residual` — a residual block as one stage operator, and its stored forms;
* :mod:`.parts` — the sign parts t⁺, t⁻ of a tensor, made once per tensor, and the sign they carry.

May import: numpy, scipy, torch, :mod:`chainlab.kernels`, :mod:`chainlab.errors`.  Nothing here
knows about models, rules or chains.
"""
from .block import BlockOperator, BlockSum, add_operators
from .conv import ConvGeometry, conv_matrix
from .implicit import (ConvSpec, DiagonalOperator, GatherOperator, LayerTerms, PoolOperator, Scale, TermsOperator,
                       TorchOperator, per_image)
from .parts import known_sign, negative_part, positive_part
from .operators import (DenseOperator, Diagonal, Operator, Product, SparseOperator, Sum, Transposed, as_operator,
                        scale_rows, zero_operator)
from .pairs import DeltaMaxPoolOperator, PairLinear, PairMap, PairScale
from .pool import PoolSpec
from .residual import ClippedSplit, DeepLiftResidual, ResidualBlock, ResidualOperator
from .products import DENSE_ABOVE, PrefixProduct, multiply, prefix_products, product, stream_apply
from .spmat import channel_cosine, column_norms, dense_sparse, density, spgemm, spmm

__all__ = [
    "BlockOperator", "BlockSum", "ConvGeometry", "ConvSpec", "DENSE_ABOVE", "DeepLiftResidual", "DeltaMaxPoolOperator",
    "DenseOperator", "Diagonal", "DiagonalOperator", "GatherOperator",
    "LayerTerms", "Operator", "PairLinear", "PairMap", "PairScale", "PoolOperator", "PoolSpec", "PrefixProduct",
    "Product", "ResidualBlock", "ResidualOperator", "ClippedSplit", "Scale", "SparseOperator", "Sum",
    "TermsOperator", "TorchOperator", "Transposed", "add_operators", "as_operator", "channel_cosine", "per_image",
    "column_norms", "conv_matrix", "known_sign", "negative_part", "positive_part", "dense_sparse", "density",
    "multiply", "prefix_products", "product",
    "scale_rows", "spgemm", "spmm", "stream_apply", "zero_operator",
]
