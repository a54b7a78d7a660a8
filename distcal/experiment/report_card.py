"""The report card of ``distcal evaluate`` as one self-contained HTML file.

Tables are HTML tables and the figures PNG images embedded as base64 ``data:`` URIs, with the
style inline: the file opens in any browser from disk, with no server, no script and nothing
fetched from elsewhere.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

from .schema import PARAMETERS, SCORES

__all__ = ["draw_figures", "render_report"]

#: The columns of the tables: scores and the fitted temperature.
_COLUMNS = (
    *(
        SCORES[key]
        for key in ("accuracy", "ece15", "nll", "brier", "overconfidence", "underconfidence")
    ),
    PARAMETERS["temperature"],
)

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; padding: 0 1em; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; } td.text, th.text { text-align: left; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def draw_figures(figures: dict, result: dict) -> dict:
    """Draw the report's figures (the first student), as PNG bytes by name.

    Parameters
    ----------
    figures : dict
        ``y_test`` and, per training set, the test ``probabilities`` of each calibrator row
        and the maximum logits (``clean`` and ``masked`` training images, ``test``).
    result : dict
        What :func:`~distcal.experiment.evaluate_distilled` returns (for titles).

    Returns
    -------
    dict
        ``{"reliability": bytes, "max_logits": bytes}``; empty without matplotlib
        (``pip install "distcal[plot]"``).
    """
    try:
        import matplotlib
    except ImportError:
        return {}
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import reliability_diagram

    y_test = np.asarray(figures["y_test"])
    seed = result["config"]["seeds"][0]
    panels = [
        (name, row)
        for name in ("distilled", "random real")
        for row in figures[name]["probabilities"]
    ]
    fig, axes = plt.subplots(
        2, len(panels), figsize=(2.9 * len(panels), 4.4), height_ratios=[3, 1], sharex=True,
        squeeze=False,
    )  # fmt: skip
    for column, (name, row) in enumerate(panels):
        proba = figures[name]["probabilities"][row]
        reliability_diagram(y_test, proba, ax=axes[:, column], label=row)
        axes[0, column].set_title(f"{name}: {row}", fontsize=9)
    fig.suptitle(f"Reliability on the test images (student of seed {seed})", fontsize=10)
    fig.tight_layout()
    reliability = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.3), squeeze=False)
    for ax, name in zip(axes[0], ("distilled", "random real"), strict=True):
        parts = figures[name]
        values = [parts["clean"], parts["masked"], parts["test"]]
        bins = np.histogram_bin_edges(np.concatenate(values), bins=30)
        for data, label in zip(
            values, ("training images", "masked training images (0.3)", "test images"), strict=True
        ):
            ax.hist(data, bins=bins, density=True, histtype="step", linewidth=1.5, label=label)
        ax.set_title(f"student of the {name} images: maximum logits", fontsize=9)
        ax.set_xlabel("maximum logit")
        ax.legend(fontsize=7)
    fig.tight_layout()
    max_logits = _png(fig)
    plt.close(fig)
    return {"reliability": reliability, "max_logits": max_logits}


def _cell(value, scale=1, decimals=3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value * scale:.{decimals}f}"


def _interval(entry: dict, key: str, scale: float, decimals: int) -> str:
    mean = entry.get(key)
    if mean is None:
        return "-"
    text = _cell(mean, scale, decimals)
    sd, low, high = (entry.get(f"{key}_{part}") for part in ("std", "low", "high"))
    if sd is not None and not math.isnan(sd):
        text += f" ± {_cell(sd, scale, decimals)}"
        text += (
            f"<br><small>[{_cell(low, scale, decimals)}, {_cell(high, scale, decimals)}]</small>"
        )
    return text


def _table(header, rows, text_columns=1) -> str:
    def cell(tag, value, index):
        kind = ' class="text"' if index < text_columns else ""
        return f"<{tag}{kind}>{value}</{tag}>"

    head = "".join(cell("th", html.escape(str(h)), i) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", value, i) for i, value in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _escape(value) -> str:
    return html.escape(str(value))


def render_report(result: dict, images: dict) -> str:
    """Render the report card as one self-contained HTML page.

    Parameters
    ----------
    result : dict
        What :func:`~distcal.experiment.evaluate_distilled` returns.
    images : dict
        PNG bytes by figure name (:func:`draw_figures`); may be empty.

    Returns
    -------
    str
        The HTML page.
    """
    config = result["config"]
    the_set, data, protocol = config["set"], config["dataset"], config["protocol"]
    n_students = len(config["seeds"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>distcal report card: {_escape(result['path'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Calibration report card of {_escape(result['path'])}</h1>",
        "<p>"
        + _escape(
            f"{the_set['format']} set of {the_set['images'][0]} images of shape "
            f"{tuple(the_set['images'][1:])} with {the_set['labels']} labels, in "
            f"{the_set['space']}; real data {data['name']} ({data['n_classes']} classes: "
            f"{data['train']} training, {data['held_out']} held-out and {data['test']} test "
            f"images). {n_students} students per training set, protocol {protocol['name']!r} "
            f"({protocol['source']})."
        )
        + "</p>",
    ]
    parts.append("<h2>What was assumed</h2>")
    if result["assumed"]:
        parts.append(
            _table(
                ["what", "value", "why"],
                [
                    [_escape(a["what"]), _escape(a["value"]), _escape(a["why"])]
                    for a in result["assumed"]
                ],
                text_columns=3,
            )
        )
    else:
        parts.append("<p>Nothing: the file holds everything the evaluation needs.</p>")

    parts.append("<h2>Scores on the test images, over students</h2>")
    parts.append(
        '<p class="note">Mean ± sample SD (ddof=1) over students, with the 95% t-interval '
        "below. ECE-15 is the top-label expected calibration error with 15 equal-width bins; "
        "over- and under-confidence are its two parts (bins whose confidence exceeds their "
        "accuracy, and the others), which sum to it. <b>none</b>: uncalibrated; <b>TS</b>: "
        "temperature scaling fitted on held-out real images; <b>MTS</b>: masked temperature "
        "scaling fitted on the student's training images alone (the distilled set, or the "
        "random real images), as a user with only the set can. <b>random real</b>: students "
        "trained the same way on random real training images, as many per class as the set "
        "has.</p>"
    )
    header = ["training set", "calibrator", "fitted on", *[c.title for c in _COLUMNS]]
    rows = [
        [
            _escape(entry["training_set"]),
            _escape(entry["calibrator"]),
            _escape(entry["data"]),
            *[_interval(entry, c.key, c.scale, c.digits) for c in _COLUMNS],
        ]
        for entry in result["summary"]
    ]
    parts.append(_table(header, rows, text_columns=3))
    notes = [e for e in result["summary"] if e["note"]]
    if notes:
        parts.append(
            '<p class="note">Warnings of the fits: '
            + "; ".join(
                f"{_escape(e['training_set'])} {_escape(e['calibrator'])}: {_escape(e['note'])}"
                for e in notes
            )
            + "</p>"
        )

    parts.append("<h2>Figures (first student)</h2>")
    if images:
        for name, caption in (
            ("reliability", "Reliability diagrams on the test images."),
            (
                "max_logits",
                "Maximum logits of each student on its training images, masked copies of them "
                "and the test images: a network trained on distilled data concentrates them, "
                "and masking spreads them.",
            ),
        ):
            encoded = base64.b64encode(images[name]).decode("ascii")
            parts.append(
                f'<figure><img alt="{_escape(caption)}" src="data:image/png;base64,{encoded}">'
                f"<figcaption>{_escape(caption)}</figcaption></figure>"
            )
    else:
        parts.append('<p>The figures need matplotlib: pip install "distcal[plot]".</p>')

    parts.append("<h2>Maximum-logit diagnostics, mean over students</h2>")
    parts.append(_diagnostics_table(result["diagnostics"]))
    pixels = config["pixels"]
    parts.append("<h2>Pixels in the set's space</h2>")
    parts.append(
        '<p class="note">The set\'s pixels and the real training images mapped into the same '
        "space: distilled images start from real ones and keep roughly their scale, so very "
        "different values suggest the space was assumed wrongly (see above).</p>"
    )
    parts.append(
        _table(
            ["images", "mean", "SD"],
            [
                [name, _cell(pixels[key]["mean"], 1, 4), _cell(pixels[key]["sd"], 1, 4)]
                for key, name in (("set", "the set"), ("real", "real training images"))
            ],
        )
    )

    parts.append("<h2>Per student</h2>")
    header = ["seed", "training set", "calibrator", *[c.title for c in _COLUMNS], "note"]
    rows = [
        [
            str(row["seed"]),
            _escape(row["training_set"]),
            _escape(row["calibrator"]),
            *[_cell(row[c.key], c.scale, c.digits) for c in _COLUMNS],
            _escape(row["note"]),
        ]
        for row in result["rows"]
    ]
    parts.append(_table(header, rows, text_columns=3))

    parts.append("<h2>Configuration</h2>")
    settings = [
        [_escape(key), _escape(value)]
        for key, value in {
            **{f"protocol {k}": v for k, v in protocol.items()},
            "set digest": the_set["digest"],
            "set details": the_set["details"],
            "images per class": config["counts_per_class"],
            "seeds": config["seeds"],
            "split seed": data["split_seed"],
            "data digest": data["digest"],
            "device": config["device"] or "cpu",
            "distcal": config["distcal"],
            **{f"environment {k}": v for k, v in config["environment"].items()},
        }.items()
    ]
    parts.append(_table(["setting", "value"], settings, text_columns=2))
    parts.append(
        '<p class="note">Written by <code>distcal evaluate</code>; the CSV files beside this '
        "page hold every number (students.csv, summary.csv, diagnostics.csv).</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _diagnostics_table(rows: list[dict]) -> str:
    columns = (
        ("train_clean_mean", "training: mean"),
        ("train_clean_std", "training: SD"),
        ("train_masked_mean", "masked: mean"),
        ("train_masked_std", "masked: SD"),
        ("test_mean", "test: mean"),
        ("test_std", "test: SD"),
        ("spread_ratio", "IQR masked / clean"),
    )
    body = []
    for training_set in dict.fromkeys(row["training_set"] for row in rows):
        members = [row for row in rows if row["training_set"] == training_set]
        body.append(
            [_escape(training_set)]
            + [
                _cell(float(np.mean([m[key] for m in members if key in m])), 1, 3)
                for key, _ in columns
            ]
        )
    return _table(["training set", *[title for _, title in columns]], body)
