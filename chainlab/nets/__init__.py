"""The nets chainlab ships, the architectures it knows, the data they see, and weights on disk.

* :mod:`.architectures` — the shipped architectures (digits MLP/CNN, Sixt's CIFAR net, …);
* :mod:`.zoo` — VGG-16, ResNet-50 and tiny ResNets (no torchvision), seeded init;
* :mod:`.storage` — model files (.npz with int8 for big tensors), state-dict files read as data only,
  fingerprints of a module's state dict;
* :mod:`.models` — shipped nets and architectures by name (:func:`load`, :func:`build`, :func:`save`), and
  where the shipped data is (:func:`~.models.data_dir`);
* :mod:`.manifest` — the shipped data's checksums (``SHA256SUMS``), checked when a file is read;
* :mod:`.data` — the shipped digits and the input format of each shipped net.

May import: torch, numpy, :mod:`chainlab.errors`, :mod:`chainlab.files`.  Nothing here extracts chains.
"""
from . import data, manifest, models, storage, zoo

__all__ = ["data", "manifest", "models", "storage", "zoo"]
