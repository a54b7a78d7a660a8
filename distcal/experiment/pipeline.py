"""One seed of the experiment: split, distil, train students, calibrate, score.

The steps are functions of their own so that the demo and the benchmarks build their networks,
splits and calibrator rows the same way: :func:`split_indices`, :func:`dm_trainer`,
:func:`student_classifier` and :func:`calibrate_student`. :func:`run_seed` chains them into one
seed of :func:`distcal.experiment.run_experiment`.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch

from ..calibration import MaskedTemperatureScaling, TemperatureScaling, module_logits
from ..distill import (
    MDTTrainer,
    StudentClassifier,
    channel_statistics,
    masking_spread,
    max_logit_statistics,
    normalize,
    stratified_split,
)
from ..exceptions import DistcalWarning
from .recipe import kept_images, recipe_rows, set_recipe, transfer_student, validation_split
from .scores import calibrator_row, compare_rows, score_columns
from .settings import (
    COMPARISONS,
    RECIPE_COMPARISONS,
    TRANSFER_RECIPES,
    DatasetRecipe,
    Profile,
    dataset_recipe,
)

__all__ = [
    "calibrate_student",
    "dm_trainer",
    "max_logit_diagnostics",
    "run_seed",
    "split_indices",
    "student_classifier",
]


def split_indices(data, seed: int, *, sizes=(0.6, 0.2, 0.2), n_held_out: int = 5000):
    """Training, held-out and test indices of a dataset, stratified and fixed by ``seed``.

    Parameters
    ----------
    data : Dataset
        A dataset of :func:`distcal.distill.load_dataset`.
    seed : int
        Seeds the split.
    sizes : sequence of three float or int, default=(0.6, 0.2, 0.2)
        Fractions or counts of the training, held-out and test parts, for a dataset without a
        test split of its own (digits).
    n_held_out : int, default=5000
        Held-out images taken from the training split of a dataset that has a test split of its
        own (Fashion-MNIST); its test split is the test part.

    Returns
    -------
    train, held_out, test : Tensor
        Index tensors, disjoint.
    """
    if data.test_start is None:
        return stratified_split(data.labels, list(sizes), random_state=seed)
    pool = torch.arange(data.test_start)
    train, held_out = stratified_split(
        data.labels[pool], [data.test_start - n_held_out, n_held_out], random_state=seed
    )
    return pool[train], pool[held_out], torch.arange(data.test_start, len(data.labels))


def dm_trainer(recipe: DatasetRecipe, sizes, *, random_state: int, **options) -> MDTTrainer:
    """Return an unfitted distribution-matching trainer with the dataset's depth and augmentation.

    Parameters
    ----------
    recipe : DatasetRecipe
        The dataset's network depth and augmentation.
    sizes : Profile or object
        Anything with a profile's ``ipc``, ``width``, ``iterations`` and ``batch_real`` (a
        benchmark's parsed arguments, for instance).
    random_state : int
        Seeds the distillation.
    **options
        Further parameters of :class:`distcal.distill.MDTTrainer` (the mask, the device,
        ``verbose``).

    Returns
    -------
    MDTTrainer
        The trainer, to fit on the training images.
    """
    return MDTTrainer(
        "dm",
        ipc=sizes.ipc,
        width=sizes.width,
        depth=recipe.depth,
        iterations=sizes.iterations,
        augment=recipe.augment,
        method_params={"batch_real": sizes.batch_real},
        random_state=random_state,
        **options,
    )


def student_classifier(
    recipe: DatasetRecipe, *, width: int, epochs: int, random_state: int, **options
) -> StudentClassifier:
    """Return an unfitted student with the dataset's depth and augmentation.

    Parameters
    ----------
    recipe : DatasetRecipe
        Gives the depth, and the augmentation unless ``options`` name one.
    width : int
        Channels of the ConvNet.
    epochs : int
        Training epochs.
    random_state : int
        Seeds the weights, the batches and the augmentation.
    **options
        Further parameters of :class:`distcal.distill.StudentClassifier` (``augment`` replaces
        the recipe's).

    Returns
    -------
    StudentClassifier
        The student, to fit on its training images.
    """
    options.setdefault("augment", recipe.augment)
    return StudentClassifier(
        width=width, depth=recipe.depth, epochs=epochs, random_state=random_state, **options
    )


def _quietly(fit):
    """Run ``fit`` and return (result, warning messages) instead of printing warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DistcalWarning)
        result = fit()
    return result, [str(w.message).split(":", 1)[-1].strip()[:80] for w in caught]


def calibrate_student(
    student,
    sets: dict,
    y_test,
    *,
    strict_ratios=(),
    seed: int,
    test_logits=None,
    held_out_masked: bool = True,
):
    """Every calibrator of the experiment on one student, scored on the test images.

    The held-out regime fits temperature scaling ("TS") and the default masked temperature
    scaling, with the network ("MTS auto") and on logits ("MTS auto logits"), on the held-out
    images; the strict regime fits the same, and masked temperature scaling with each fixed
    ratio ("MTS 0.1", ...), on the student's own training images.

    Parameters
    ----------
    student : StudentClassifier
        The fitted student.
    sets : dict
        ``"train"`` and ``"cal"``: (images, labels) the student was trained on and the held-out
        ones; ``"test"``: the test images.
    y_test : ndarray of shape (n_test,)
        The test labels.
    strict_ratios : sequence of float, default=()
        The fixed ratios of the strict regime.
    seed : int
        ``random_state`` of every masked calibrator.
    test_logits : Tensor or None, default=None
        ``student.decision_function(sets["test"])``, when the caller has it already; None
        computes it.
    held_out_masked : bool, default=True
        Fit the masked calibrators on the held-out images too ("MTS auto" and "MTS auto
        logits" in the held-out regime); the transfer students, which are compared with
        held-out TS only, skip them.

    Returns
    -------
    rows : list of dict
        One row per calibrator and regime: ``calibrator``, ``regime``, the columns of
        :func:`~distcal.experiment.scores.score_columns`, ``temperature``, ``mask_ratio``,
        ``masked_accuracy``, ``detected`` (the regime the default read) and ``note`` (the
        warnings of the fit).
    probabilities : dict
        The test probabilities of each row, by (calibrator, regime).
    """
    net = student.network_
    X_train, y_train = sets["train"]
    X_cal, y_cal = sets["cal"]
    X_test = sets["test"]
    logits = {
        name: student.decision_function(X) for name, X in (("train", X_train), ("cal", X_cal))
    }
    logits["test"] = student.decision_function(X_test) if test_logits is None else test_logits
    rows, probabilities = [], {}
    # The network's clean test logits are computed once (above). A masked calibrator with the
    # network predicts softmax(network(X_test) / T); its ``calibrator_`` applies the same T to
    # the same logits (the same batches of the same network), so the probabilities are the
    # ones predict_proba(X_test) gives, without a forward pass over the test images per row.
    batch_size = student.batch_size

    def on_test(masked):
        return masked.calibrator_.predict_proba(logits["test"])

    def add(calibrator, regime, fitted, proba, notes=()):
        probabilities[calibrator, regime] = proba
        rows.append(calibrator_row(calibrator, regime, fitted, proba, y_test, notes))

    add("none", "-", None, torch.softmax(logits["test"], dim=1))
    for regime, X, y, key in (
        ("held-out", X_cal, y_cal, "cal"),
        ("strict", X_train, y_train, "train"),
    ):
        ts, notes = _quietly(lambda y=y, key=key: TemperatureScaling().fit(logits[key], y))
        add("TS", regime, ts, ts.predict_proba(logits["test"]), notes)
        if regime == "held-out" and not held_out_masked:
            continue
        if regime == "strict":
            for ratio in strict_ratios:
                fixed, notes = _quietly(
                    lambda ratio=ratio: MaskedTemperatureScaling(
                        ratio, model=net, batch_size=batch_size, random_state=seed
                    ).fit(X_train, y_train)
                )
                add(f"MTS {ratio}", regime, fixed, on_test(fixed), notes)
        # The default, as a user gets it: it reads the regime from the data.
        auto, notes = _quietly(
            lambda X=X, y=y: MaskedTemperatureScaling(
                model=net, batch_size=batch_size, random_state=seed
            ).fit(X, y)
        )
        add("MTS auto", regime, auto, on_test(auto), notes)
        auto_logits, notes = _quietly(
            lambda y=y, key=key: MaskedTemperatureScaling(random_state=seed).fit(logits[key], y)
        )
        add(
            "MTS auto logits", regime, auto_logits, auto_logits.predict_proba(logits["test"]), notes
        )
    return rows, probabilities


def max_logit_diagnostics(net, images, test_images, seed: int, *, test_logits=None):
    """Maximum-logit statistics of a network on its training images (clean, masked) and the test.

    Parameters
    ----------
    net : torch.nn.Module
        The trained network.
    images : Tensor
        Its training images.
    test_images : Tensor
        The test images.
    seed : int
        Seeds the masks (ratio 0.3, 4 copies per image).
    test_logits : Tensor or None, default=None
        The network's logits on ``test_images``, when the caller has them already (a network
        in eval mode gives the same rows in any batch size that is a multiple of
        :data:`distcal._modules.CPU_PIECE_ROWS`); None computes them.

    Returns
    -------
    diagnostics : dict
        ``train_clean``, ``train_masked`` and ``test`` (statistics of the maximum logits) and
        ``spread_ratio`` (interquartile range masked / clean).
    spread : MaskingSpread
        The masking spread, with the logits behind it (for the figures).
    """
    spread = masking_spread(net, images, mask_ratio=0.3, n_masks=4, random_state=seed)
    if test_logits is None:
        test_logits = module_logits(net, test_images, batch_size=512)
    return {
        "train_clean": dict(spread.clean),
        "train_masked": dict(spread.masked),
        "spread_ratio": spread.spread_ratio,
        "test": dict(max_logit_statistics(test_logits)),
    }, spread


def run_seed(
    data,
    dataset: str,
    profile: Profile,
    seed: int,
    device,
    verbose: bool,
    figures,
    sets_folder=None,
):
    """Run one seed of the experiment: distil, train the students, calibrate and score them.

    Parameters
    ----------
    data : Dataset
        The dataset of ``dataset``, loaded.
    dataset : str
        Its name (a key of :data:`~distcal.experiment.settings.DATASETS`).
    profile : Profile
        The sizes.
    seed : int
        Seeds the split, the distillation, the students and the masks.
    device : str or torch.device or None
        Where to train (None: the CPU).
    verbose : bool
        Show progress bars.
    figures : dict or None
        A dict to fill with what the figures show (the probabilities and masking spread of the
        plain DM and real students), or None.
    sets_folder : Path or None, default=None
        Where to save the distilled sets with their calibration recipes
        (``seed-<seed>-<set>.safetensors``); None saves nothing.

    Returns
    -------
    dict
        ``seed``, ``rows``, ``comparisons``, ``diagnostics``, ``recipes`` (per distilled set,
        its calibration recipe as :meth:`~distcal.calibration.CalibrationRecipe.to_dict`
        gives it) and ``stage_seconds``.
    """
    recipe = dataset_recipe(dataset)
    seconds = {}
    clock = time.perf_counter()

    def lap(stage):
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = seconds.get(stage, 0.0) + now - clock
        clock = now

    train, cal, test = split_indices(data, seed)
    X_train, y_train = data.images[train], data.labels[train]
    mean, std = (s.float() for s in channel_statistics(X_train))
    cal_images = normalize(data.images[cal], mean, std)
    test_images = normalize(data.images[test], mean, std)
    y_cal, y_test = data.labels[cal].numpy(), data.labels[test].numpy()

    training_sets, distilled = {}, {}
    for name, mask_ratio in (("DM", 0.0), ("MDT", profile.mdt_ratio)):
        options = {"device": device, "verbose": verbose, "mask_apply_to": "both"}
        trainer = dm_trainer(recipe, profile, random_state=seed, mask_ratio=mask_ratio, **options)
        trainer.fit(X_train, y_train)
        training_sets[name] = (trainer.images_, trainer.labels_)
        distilled[name] = trainer.to_distilled_set()
    pick = stratified_split(y_train, [profile.ipc * data.n_classes], random_state=seed)[0]
    training_sets["real"] = (normalize(X_train[pick], mean, std), y_train[pick])
    lap("distillation")

    shared = {"n_classes": data.n_classes, "device": device, "verbose": verbose}
    # What a distilled set's maker ships with it (issue 21): the calibration recipe, computed on
    # a validation split of the training split (the maker's real data), or instead a few of
    # those real images per class.
    template = student_classifier(
        recipe, width=profile.width, epochs=profile.student_epochs, random_state=None, **shared
    )
    validation = validation_split(y_train, profile.recipe_validation, seed)
    X_val, y_val = X_train[validation], y_train[validation]
    kept = {
        k: (normalize(X_val[index], mean, std), y_val[index].numpy())
        for k, index in kept_images(y_val, profile.kept_per_class, data.n_classes, seed).items()
    }
    recipes = {}
    if profile.recipe_copies:
        for index, name in enumerate(distilled):
            distilled[name].recipe, notes = _quietly(
                lambda name=name, index=index: set_recipe(
                    distilled[name], X_val, y_val, template, copies=profile.recipe_copies,
                    seed=seed, set_index=index,
                )
            )  # fmt: skip
            recipes[name] = {**distilled[name].recipe.to_dict(), "warnings": notes}
            if sets_folder is not None:
                distilled[name].save(Path(sets_folder) / f"seed-{seed}-{name}.safetensors")
        lap("recipes")

    def student(images, labels, alpha, epochs):
        return student_classifier(
            recipe,
            width=profile.width,
            epochs=epochs,
            random_state=seed,
            mixup_alpha=alpha,
            **shared,
        ).fit(images, labels)

    def with_set(fitted, set_name, calibrated, probabilities, test_logits):
        """Add the rows of what travels with a distilled set (recipe, kept images)."""
        if set_name not in distilled:
            return []
        extra, extra_proba = recipe_rows(
            fitted, distilled[set_name], kept, y_test, test_logits, seed=seed, quietly=_quietly,
            with_recipe=bool(profile.recipe_copies),
        )  # fmt: skip
        calibrated += extra
        probabilities.update(extra_proba)
        return list(RECIPE_COMPARISONS) if profile.recipe_copies else []

    rows, comparisons, diagnostics = [], [], {}
    for set_name, (images, labels) in training_sets.items():
        sets = {"train": (images, labels.numpy()), "cal": (cal_images, y_cal), "test": test_images}
        for student_name, alpha, changes in (
            ("plain", 0.0, None),
            ("mixup", profile.mixup_alpha, None),
            *((t, 0.0, TRANSFER_RECIPES[t]) for t in profile.transfer if set_name in distilled),
        ):
            if changes is None:
                fitted = student(images, labels, alpha, profile.student_epochs)
            else:
                fitted = transfer_student(template, student_name, changes).set_params(
                    random_state=seed
                ).fit(images, labels)  # fmt: skip
            lap("students")
            # The test images' logits serve the calibrators and the diagnostics: one pass.
            test_logits = fitted.decision_function(test_images)
            calibrated, probabilities = calibrate_student(
                fitted,
                sets,
                y_test,
                strict_ratios=profile.strict_ratios if changes is None else (),
                seed=seed,
                test_logits=test_logits,
                held_out_masked=changes is None,
            )
            pairs = with_set(fitted, set_name, calibrated, probabilities, test_logits)
            lap("calibration")
            key = {"seed": seed, "training_set": set_name, "student": student_name}
            rows += [{**key, **row} for row in calibrated]
            if set_name != "real":
                pairs = (list(COMPARISONS) if changes is None else []) + pairs
                compared = compare_rows(
                    y_test, probabilities, seed, profile.bootstrap_resamples, pairs=pairs
                )
                comparisons += [{**key, **row} for row in compared]
            lap("evaluation")
            if student_name == "plain":
                diagnostics[set_name], spread = max_logit_diagnostics(
                    fitted.network_, images, test_images, seed, test_logits=test_logits
                )
                if figures is not None and set_name in ("DM", "real"):
                    figures[set_name] = (probabilities, spread)
                lap("evaluation")
    # The baseline of the paper's maximum-logit comparison: a network of the same architecture
    # trained on the whole training split, with the same recipe.
    full_images = normalize(X_train, mean, std)
    steps_per_epoch = math.ceil(len(y_train) / 256)
    full = student(
        full_images, y_train, 0.0, max(1, math.ceil(profile.full_data_steps / steps_per_epoch))
    )
    lap("full-data network")
    full_test_logits = full.decision_function(test_images)
    diagnostics["full"], _ = max_logit_diagnostics(
        full.network_, full_images, test_images, seed, test_logits=full_test_logits
    )
    full_scores = score_columns(y_test, torch.softmax(full_test_logits, dim=1))
    diagnostics["full"]["scores"] = full_scores
    lap("evaluation")
    return {
        "seed": seed,
        "rows": rows,
        "comparisons": comparisons,
        "diagnostics": diagnostics,
        "recipes": recipes,
        "stage_seconds": seconds,
    }
