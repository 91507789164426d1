"""Studies: measurements that change or re-run the model, given the model and an extraction function.

* :mod:`.averages` — convergence of averaged attributions over perturbed copies (Binder et al.);
* :mod:`.sanity` — cascading parameter randomization (Sixt et al. §4, Adebayo et al.);
* :mod:`.scaling` — how each rule's constants react to rescaled weights (Binder et al.);
* :mod:`.explanations` — explanation methods that re-run the model: batched vanilla gradient, SmoothGrad,
  GradCAM / Guided GradCAM (Mehrpanah et al.);
* :mod:`.spectral` — EF and the explanation gap of several methods over a net's images.

May import: :mod:`chainlab.extraction` (the default extraction function), :mod:`chainlab.measures`,
:mod:`chainlab.trace`, :mod:`chainlab.nets`, :mod:`chainlab.errors`.  Measures proper (chain in,
records out) live in :mod:`chainlab.measures`.
"""
from .averages import PERTURBATIONS, averages, hoeffding_samples, perturb
from .explanations import AUTHORS_GRADCAM, Traced, gradcam, predict, smoothgrad, vanilla
from .sanity import cascading_randomization, sanity
from .scaling import scale_weights, weight_scaling
from .spectral import explanation_spectra

__all__ = ["AUTHORS_GRADCAM", "Traced", "explanation_spectra", "gradcam", "predict", "smoothgrad", "vanilla",
           "PERTURBATIONS", "averages", "cascading_randomization", "hoeffding_samples", "perturb", "sanity",
           "scale_weights", "weight_scaling"]
