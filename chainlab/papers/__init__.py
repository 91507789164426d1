"""The papers' claims, one package per paper, each in the same frame.

* :mod:`.spec`     — :class:`ClaimSpec`: a claim pre-registered with the paper's sentence, quantity, scope,
                     statistic, interval and decision rule, every threshold with its provenance (paper/code/ours);
* :mod:`.verdict`  — three-valued outcomes (reproduced / not reproduced / inconclusive; not checked), parts
                     decided from intervals, Kleene combination, agreement over seeds; :class:`Verdict`;
* :mod:`.stats`    — the intervals verdicts are decided on (order statistics, Student t over seeds, BCa);
* :mod:`.context`  — the run's nets, images, cache and records, shared by the measure code.

Per paper (``sixt``, ``binder``, ``mehrpanah``): ``spec`` (the ClaimSpecs), ``protocol`` (nets, images, sizes
per setting), ``measure`` (numbers and records from nets), ``decide`` (pure: numbers in, Decision out),
``report`` (observed text and figures).  The app (:mod:`chainlab.app.verify`) only orchestrates, caches and
writes.
"""
from .spec import ClaimSpec, Scope, Source, Threshold
from .verdict import Decision, Estimate, Outcome, Part, Verdict

__all__ = ["ClaimSpec", "Scope", "Source", "Threshold", "Decision", "Estimate", "Outcome", "Part", "Verdict"]
