"""Figures for papers: reliability diagrams of one or several models, maximum-logit histograms.

matplotlib is an optional dependency (``pip install "distcal[plot]"``), imported when a figure
is drawn. Figures distcal creates are sized for a paper (one column, or the page width for
several panels) with fonts that stay readable there; on Axes you pass, your style is kept.
"""

from ._histogram import max_logit_histogram
from ._reliability import ReliabilityDisplay, reliability_diagram

__all__ = ["ReliabilityDisplay", "max_logit_histogram", "reliability_diagram"]
