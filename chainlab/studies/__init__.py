"""Studies: measurements that change or re-run the model, given the model and an extraction function.

* :mod:`.averages` — convergence of averaged attributions over perturbed copies (Binder et al.);
* :mod:`.constants` — empirical componentwise constants over test images × perturbations (Binder et al.);
* :mod:`.ranges` — a-priori ranges of attributions over a perturbation's support (interval bounds);
* :mod:`.sanity` — cascading parameter randomization (Sixt et al. §4, Adebayo et al.);
* :mod:`.scaling` — rescaled weights: the scaling identities and the function-preserving (c, 1/c) rescaling.
* :mod:`.explanations` — explanation methods that re-run the model: batched vanilla gradient, SmoothGrad,
  GradCAM / Guided GradCAM (Mehrpanah et al.);
* :mod:`.spectral` — EF and the explanation gap of several methods over a net's images;
* :mod:`.faithfulness` — pixel deletion / insertion AUC of explanation maps (faithfulness).

May import: :mod:`chainlab.extraction` (the default extraction function), :mod:`chainlab.measures`,
:mod:`chainlab.trace`, :mod:`chainlab.nets`, :mod:`chainlab.errors`.  Measures proper (chain in,
records out) live in :mod:`chainlab.measures`.
"""
from .averages import PERTURBATIONS, averages, group_errors, hoeffding_samples, hoeffding_t, perturb
from .constants import empirical_constants, rule_label, rule_spec
from .explanations import AUTHORS_GRADCAM, Traced, gradcam, predict, smoothgrad, vanilla
from .faithfulness import deletion_insertion
from .ranges import apriori_range, interval_bounds, support_bounds, support_box
from .sanity import cascading_randomization, sanity
from .scaling import preserving_scales, rescale_consecutive, rescaling_runs, scale_weights, weight_scaling
from .spectral import explanation_spectra

__all__ = ["PERTURBATIONS", "averages", "cascading_randomization", "hoeffding_samples", "perturb", "sanity",
           "scale_weights", "weight_scaling", "group_errors", "hoeffding_t", "empirical_constants", "rule_label",
           "rule_spec", "apriori_range", "interval_bounds", "support_bounds", "support_box", "preserving_scales",
           "rescale_consecutive", "rescaling_runs", "AUTHORS_GRADCAM", "Traced", "explanation_spectra", "gradcam", "predict",
           "smoothgrad", "vanilla", "deletion_insertion"]
