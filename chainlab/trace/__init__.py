"""From a torch model to a flat list of stages, one per chain operator.

* :mod:`.graph` — the model's forward read with torch.fx: ops in order, residual sums found;
* :mod:`.activations` — activations (ReLU, Softplus, SiLU) and their derivatives;
* :mod:`.stages` — :class:`Stage` (immutable), :class:`Record` (forward quantities at one input),
  :class:`Net` (stages + input checks + forward);
* :mod:`.canonize` — BatchNorm folding as a named pass, like zennit's canonizers;
* :mod:`.model` — :func:`trace` runs the passes; :func:`check_logits` compares with the model.

May import: torch, :mod:`chainlab.linalg` (conv/pool parameters), :mod:`chainlab.errors`.
"""
from .activations import RELU, Activation
from .canonize import merge_batchnorm
from .graph import SUPPORTED, ResidualSpec, linearize
from .model import check_logits, eval_mode, trace
from .stages import Net, Record, Stage, conv_padding, walk_records, walk_stages, weights_fingerprint

__all__ = ["Activation", "RELU", "SUPPORTED", "ResidualSpec", "Net", "Record", "Stage", "check_logits",
           "conv_padding", "eval_mode", "linearize", "merge_batchnorm", "trace", "walk_records", "walk_stages", "weights_fingerprint"]
