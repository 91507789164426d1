"""Small hand-built chains for the measure tests (no torch needed)."""
import numpy as np
import scipy.sparse as sp

from chainlab import Chain, DenseOperator, SparseOperator


def make_chain(mats, shapes=None, rule="test", meta=None, space="relevance"):
    ops = [SparseOperator(m) if sp.issparse(m) else DenseOperator(np.asarray(m, dtype=np.float64)) for m in mats]
    if shapes is None:
        shapes = [(ops[0].shape[0],)] + [(op.shape[1],) for op in ops]
    n_out = ops[-1].shape[1]
    return Chain(ops, names=[f"l{i + 1}" for i in range(len(ops))], shapes=shapes,
                 input_shape=(1,) + tuple(shapes[0]), x=np.ones(ops[0].shape[0]), logits=np.arange(1.0, n_out + 1),
                 rule=rule, options={}, space=space, meta=meta or {})


def loop_product(mats):
    P = np.asarray(mats[0].toarray() if sp.issparse(mats[0]) else mats[0], dtype=np.float64)
    for m in mats[1:]:
        m = m.toarray() if sp.issparse(m) else np.asarray(m, dtype=np.float64)
        Q = np.zeros((P.shape[0], m.shape[1]))
        for i in range(P.shape[0]):
            for j in range(m.shape[1]):
                Q[i, j] = sum(P[i, t] * m[t, j] for t in range(P.shape[1]))
        P = Q
    return P
