"""The drawing helpers of every report figure live in :mod:`chainlab.papers.panels` (the papers' figure modules
use them and may not import the app); re-exported here for the app's own figures."""
from ...papers.panels import (dropped_note, figure, line_panel, not_finite, num, palette, save, select,  # noqa: F401
                              series, valued)

__all__ = ["num", "select", "valued", "figure", "save", "palette", "series", "line_panel", "not_finite",
           "dropped_note"]
