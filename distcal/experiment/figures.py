"""The figures of a run (first seed): reliability diagrams and maximum-logit histograms."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from .._files import atomic_write
from .schema import HELD_OUT, TRAINING, RowKey, fixed_ratio_row
from .scores import as_numpy
from .settings import DIAGNOSTIC_MASK, Profile

__all__ = ["draw_figures"]


def _panels(profile: Profile) -> list:
    """Return the reliability diagrams to draw: (title, row), a fixed ratio's if there is one.

    The fixed ratio shown is the paper's, 0.1, when the profile fits it, else the profile's
    first; a profile without fixed ratios shows none.
    """
    ratios = tuple(profile.training_ratios)
    ratio = 0.1 if 0.1 in ratios else (ratios[0] if ratios else None)
    fixed = (
        [] if ratio is None else [(f"MTS on the distilled set ({ratio})", fixed_ratio_row(ratio))]
    )
    return [
        ("uncalibrated", RowKey("none", "-")),
        ("TS on the distilled set", RowKey("TS", TRAINING)),
        *fixed,
        ("MTS on the distilled set ('auto')", RowKey("MTS auto", TRAINING)),
        ("TS on held-out data", RowKey("TS", HELD_OUT)),
    ]


def draw_figures(out: Path, figures: dict, splits, data, profile: Profile) -> None:
    """Draw the reliability diagrams of the plain DM student and the maximum-logit histograms.

    Nothing is drawn without matplotlib (``pip install "distcal[plot]"``).

    Parameters
    ----------
    out : Path
        The output folder (``reliability.png``, ``max_logits.png``).
    figures : dict
        What :func:`~distcal.experiment.pipeline.run_seed` collected: per training set
        ("DM", "real"), the test probabilities by row and the masking spread.
    splits : tuple of Tensor
        The seed's training, held-out and test indices.
    data : Dataset
        The dataset.
    profile : Profile
        The run's sizes: the fixed ratio shown is one of its ``training_ratios`` (see
        :func:`_panels`).
    """
    try:
        import matplotlib
    except ImportError:
        return  # figures are optional (pip install "distcal[plot]")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import max_logit_histogram, reliability_diagram

    y_test = data.labels[splits[2]].numpy()
    probabilities, _ = figures["DM"]
    panels = _panels(profile)
    fig, axes = plt.subplots(
        2, len(panels), figsize=(4 * len(panels), 5), height_ratios=[3, 1], sharex=True
    )
    for column, (title, key) in enumerate(panels):
        proba = as_numpy(probabilities[key])
        reliability_diagram(y_test, proba, ax=axes[:, column], label=key.calibrator)
        axes[0, column].set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(out / "reliability.png", partial(fig.savefig, dpi=100, format="png"))
    plt.close(fig)

    ratio, copies = DIAGNOSTIC_MASK
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, (title, set_name) in zip(
        axes,
        (
            ("plain student of the DM set, on its training images", "DM"),
            ("plain student of random real images, on its training images", "real"),
        ),
        strict=True,
    ):
        spread = figures[set_name][1]
        max_logit_histogram(
            spread.clean_logits,
            masked_logits=spread.masked_logits,
            ax=ax,
            labels=("clean", f"masked (ratio {ratio}, {copies} copies)"),
            density=True,
        )
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(out / "max_logits.png", partial(fig.savefig, dpi=100, format="png"))
    plt.close(fig)
