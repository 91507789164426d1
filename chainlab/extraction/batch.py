"""The batched entry point: :func:`extract_batch` and what goes with it (defined in :mod:`.api`, beside
:func:`~.api.extract`, which takes the same path for one input)."""
from .api import TORCH_DTYPES, batch_supported, extract_batch, forward_batch

__all__ = ["extract_batch", "forward_batch", "batch_supported", "TORCH_DTYPES"]
