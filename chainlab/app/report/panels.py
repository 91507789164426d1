"""The drawing helpers of every figure: moved below the app (:mod:`chainlab.papers.panels`) so that the papers'
figure modules can use them; re-exported here for the app's generic figures."""
from ...papers.panels import (dropped_note, figure, line_panel, not_finite, num, palette, save, select, series,
                              valued)

__all__ = ["num", "select", "valued", "figure", "save", "palette", "series", "line_panel", "not_finite",
           "dropped_note"]
