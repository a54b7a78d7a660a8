"""What travels with a distilled set, in the experiment: its calibration recipe and kept images.

For every distilled set of a seed, :func:`set_recipe` computes the set's calibration recipe as
its maker would, on a validation split of the real training split (the distiller's data, never
the held-out or test images), and :func:`kept_images` draws the few real images per class that
a maker could keep beside the set instead. :func:`recipe_rows` calibrates one student with
them: ``DistilledCalibration`` with the recipe's recommended method ("recipe") and with each
of its methods ("recipe: ratio", ...), and temperature scaling on the kept images ("TS k
real/class"). :func:`transfer_students` trains the students of recipes the proxies did not use
(:data:`~distcal.experiment.settings.TRANSFER_RECIPES`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..calibration import RECIPE_METHODS, DistilledCalibration, TemperatureScaling
from ..distill import DistilledSet, default_proxies, fit_calibration_recipe, stratified_split
from .schema import KEPT, TRAINING, RowKey
from .scores import calibrator_row

__all__ = ["kept_images", "recipe_rows", "set_recipe", "transfer_student", "validation_split"]

#: Masked copies per distilled image behind the recipes' masked temperatures.
RECIPE_N_MASKS = 20


def _seed(seed: int, *key: int) -> int:
    """Return an independent seed for one purpose of one seed of the experiment."""
    return int(np.random.SeedSequence([seed, 21, *key]).generate_state(1)[0])


def validation_split(y_train: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Return indices (into the training split) of the recipe's validation images.

    Parameters
    ----------
    y_train : Tensor of shape (n_train,)
        The training split's labels.
    size : int
        At most this many images; all of the split when it has no more.
    seed : int
        The experiment's seed.

    Returns
    -------
    Tensor
        The indices.
    """
    if size >= len(y_train):
        return torch.arange(len(y_train))
    return stratified_split(y_train, [size], random_state=_seed(seed, 1) % 2**32)[0]


def set_recipe(distilled: DistilledSet, X_val, y_val, template, *, copies: int, seed: int,
               set_index: int, n_masks: int = RECIPE_N_MASKS):  # fmt: skip
    """Compute one distilled set's calibration recipe, as its maker would.

    Parameters
    ----------
    distilled : DistilledSet
        The set.
    X_val, y_val : Tensor
        The validation images (values in [0, 1]) and labels: a split of the training split.
    template : StudentClassifier
        The experiment's plain student: the proxies are variations of it
        (:func:`distcal.distill.default_proxies`).
    copies : int
        Proxies per variation.
    seed : int
        The experiment's seed.
    set_index : int
        0 for DM, 1 for MDT: each set's proxies get their own seeds.
    n_masks : int, default=20
        Masked copies per distilled image.

    Returns
    -------
    CalibrationRecipe
        The recipe.
    """
    return fit_calibration_recipe(
        distilled,
        X_val,
        y_val,
        proxies=default_proxies(distilled, student=template, copies=copies),
        n_masks=n_masks,
        random_state=_seed(seed, 2, set_index),
        notes={"validation": f"a stratified split of {len(y_val)} images of the training split"},
    )


def kept_images(y_val: torch.Tensor, ks, n_classes: int, seed: int) -> dict:
    """Return indices (into the validation images) of k real images per class, for each k.

    The draws are nested: the images kept for a smaller k are among those of a larger one.

    Parameters
    ----------
    y_val : Tensor of shape (n_val,)
        The validation labels.
    ks : sequence of int
        Images per class.
    n_classes : int
        Number of classes.
    seed : int
        The experiment's seed.

    Returns
    -------
    dict
        k -> index tensor of ``k * n_classes`` images.
    """
    rng = np.random.default_rng(_seed(seed, 3))
    labels = np.asarray(y_val)
    order = {c: rng.permutation(np.flatnonzero(labels == c)) for c in range(n_classes)}
    return {
        k: torch.as_tensor(np.concatenate([order[c][:k] for c in range(n_classes)])) for k in ks
    }


def recipe_rows(student, distilled: DistilledSet, kept: dict, y_test, test_logits, *, seed: int,
                quietly, with_recipe: bool = True):  # fmt: skip
    """Calibrate one student with what travels with its set: the recipe, or kept images.

    Parameters
    ----------
    student : StudentClassifier
        The fitted student (trained on ``distilled``).
    distilled : DistilledSet
        The set, with its ``recipe``.
    kept : dict
        k -> (normalised images, labels) kept beside the set.
    y_test : ndarray of shape (n_test,)
        The test labels.
    test_logits : Tensor
        The student's logits on the test images.
    seed : int
        ``random_state`` of the recipe's masks.
    quietly : callable
        Runs a fit and returns (result, warning messages).
    with_recipe : bool, default=True
        Add the recipe's rows (the set must carry a recipe); False adds the kept images' only.

    Returns
    -------
    rows : list of dict
        "recipe" (the recipe's recommended method) and "recipe: <method>" for each method, in
        the regime "training" (the set and what its file carries); "TS k real/class" in the
        regime "kept".
    probabilities : dict
        The test probabilities by :class:`~distcal.experiment.schema.RowKey`.
    """
    rows, probabilities = [], {}
    net = student.network_

    def add(key, fitted, proba, notes):
        probabilities[key] = proba
        rows.append(calibrator_row(key, fitted, proba, y_test, notes))

    for method in ("auto", *RECIPE_METHODS) if with_recipe else ():
        fitted, notes = quietly(
            lambda method=method: DistilledCalibration(
                distilled.recipe, method=method, model=net, batch_size=student.batch_size,
                random_state=seed,
            ).fit(distilled.images, distilled.labels)
        )  # fmt: skip
        name = "recipe" if method == "auto" else f"recipe: {method}"
        # its temperature on the clean test logits: what predict_proba(test images) gives
        add(RowKey(name, TRAINING), fitted, fitted.calibrator_.predict_proba(test_logits), notes)
    for k, (images, labels) in kept.items():
        logits = student.decision_function(images)
        fitted, notes = quietly(lambda logits=logits, labels=labels: TemperatureScaling().fit(
            logits, labels))  # fmt: skip
        add(RowKey(f"TS {k} real/class", KEPT), fitted, fitted.predict_proba(test_logits), notes)
    return rows, probabilities


def transfer_student(template, name: str, changes: dict):
    """Return the student of a transfer recipe: ``template`` with ``changes`` applied.

    Parameters
    ----------
    template : StudentClassifier
        The experiment's plain student (unfitted).
    name : str
        The recipe's name (a key of :data:`~distcal.experiment.settings.TRANSFER_RECIPES`).
    changes : dict
        Factors for ``epochs``, ``lr`` and ``width``; an increment for ``depth``.

    Returns
    -------
    StudentClassifier
        An unfitted student.
    """
    from sklearn.base import clone

    params = template.get_params()
    update = {}
    for key, value in changes.items():
        if key == "depth":
            update[key] = params[key] + int(value)
        elif key in ("epochs", "width"):
            update[key] = max(1, round(params[key] * value))
        elif key == "lr":
            update[key] = params[key] * value
        else:
            raise ValueError(f"transfer recipe {name!r} changes {key!r}, which is not supported.")
    return clone(template).set_params(**update)
