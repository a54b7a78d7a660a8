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
from dataclasses import dataclass
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
from .schema import HELD_OUT, NO_REGIME, TRAINING, RowKey, fixed_ratio_row
from .scores import calibrator_row, compare_rows, score_columns
from .settings import (
    COMPARISONS,
    DIAGNOSTIC_MASK,
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
    training_ratios=(),
    seed: int,
    test_logits=None,
    held_out_masked: bool = True,
):
    """Every calibrator of the experiment on one student, scored on the test images.

    The held-out regime fits temperature scaling ("TS") and the default masked temperature
    scaling, with the network ("MTS auto") and on logits ("MTS auto logits"), on the held-out
    images; the training regime fits the same, and masked temperature scaling with each fixed
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
    training_ratios : sequence of float, default=()
        The fixed ratios of the training regime.
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
        The test probabilities of each row, by :class:`~distcal.experiment.schema.RowKey`.
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

    def add(key, fitted, proba, notes=()):
        probabilities[key] = proba
        rows.append(calibrator_row(key, fitted, proba, y_test, notes))

    add(RowKey("none", NO_REGIME), None, torch.softmax(logits["test"], dim=1))
    for regime, X, y, key in (
        (HELD_OUT, X_cal, y_cal, "cal"),
        (TRAINING, X_train, y_train, "train"),
    ):
        ts, notes = _quietly(lambda y=y, key=key: TemperatureScaling().fit(logits[key], y))
        add(RowKey("TS", regime), ts, ts.predict_proba(logits["test"]), notes)
        if regime == HELD_OUT and not held_out_masked:
            continue
        if regime == TRAINING:
            for ratio in training_ratios:
                fixed, notes = _quietly(
                    lambda ratio=ratio: MaskedTemperatureScaling(
                        ratio, model=net, batch_size=batch_size, random_state=seed
                    ).fit(X_train, y_train)
                )
                add(fixed_ratio_row(ratio), fixed, on_test(fixed), notes)
        # The default, as a user gets it: it reads the regime from the data.
        auto, notes = _quietly(
            lambda X=X, y=y: MaskedTemperatureScaling(
                model=net, batch_size=batch_size, random_state=seed
            ).fit(X, y)
        )
        add(RowKey("MTS auto", regime), auto, on_test(auto), notes)
        auto_logits, notes = _quietly(
            lambda y=y, key=key: MaskedTemperatureScaling(random_state=seed).fit(logits[key], y)
        )
        add(
            RowKey("MTS auto logits", regime),
            auto_logits,
            auto_logits.predict_proba(logits["test"]),
            notes,
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
        Seeds the masks (:data:`~distcal.experiment.settings.DIAGNOSTIC_MASK`: ratio 0.3, 4
        copies per image).
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
    ratio, copies = DIAGNOSTIC_MASK
    spread = masking_spread(net, images, mask_ratio=ratio, n_masks=copies, random_state=seed)
    if test_logits is None:
        test_logits = module_logits(net, test_images, batch_size=512)
    return {
        "train_clean": dict(spread.clean),
        "train_masked": dict(spread.masked),
        "spread_ratio": spread.spread_ratio,
        "test": dict(max_logit_statistics(test_logits)),
    }, spread


class _Stopwatch:
    """Seconds spent per stage of a seed, summed over the stage's laps."""

    def __init__(self):
        self.seconds = {}
        self._clock = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._clock
        self._clock = now


@dataclass
class _SeedContext:
    """What every step of one seed reads: the sizes, the split and the normalised images."""

    recipe: DatasetRecipe
    profile: Profile
    seed: int
    n_classes: int
    shared: dict
    X_train: torch.Tensor
    y_train: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    cal_images: torch.Tensor
    y_cal: object
    test_images: torch.Tensor
    y_test: object

    def student(self, images, labels, alpha: float, epochs: int):
        """Fit a student of the dataset's recipe and the profile's width on ``images``."""
        return student_classifier(
            self.recipe,
            width=self.profile.width,
            epochs=epochs,
            random_state=self.seed,
            mixup_alpha=alpha,
            **self.shared,
        ).fit(images, labels)


def _seed_context(data, dataset: str, profile: Profile, seed: int, device, verbose: bool):
    """Split the data of one seed and normalise its images with the training statistics."""
    train, cal, test = split_indices(data, seed)
    X_train = data.images[train]
    mean, std = (s.float() for s in channel_statistics(X_train))
    return _SeedContext(
        recipe=dataset_recipe(dataset),
        profile=profile,
        seed=seed,
        n_classes=data.n_classes,
        shared={"n_classes": data.n_classes, "device": device, "verbose": verbose},
        X_train=X_train,
        y_train=data.labels[train],
        mean=mean,
        std=std,
        cal_images=normalize(data.images[cal], mean, std),
        y_cal=data.labels[cal].numpy(),
        test_images=normalize(data.images[test], mean, std),
        y_test=data.labels[test].numpy(),
    )


def _training_sets(ctx: _SeedContext):
    """Distil the DM and MDT sets and draw the random real set of the same size.

    Returns the training sets, (images, labels) by name, and the distilled sets by name.
    """
    training_sets, distilled = {}, {}
    for name, mask_ratio in (("DM", 0.0), ("MDT", ctx.profile.mdt_ratio)):
        options = {
            "device": ctx.shared["device"],
            "verbose": ctx.shared["verbose"],
            "mask_apply_to": "both",
        }
        trainer = dm_trainer(
            ctx.recipe, ctx.profile, random_state=ctx.seed, mask_ratio=mask_ratio, **options
        )
        trainer.fit(ctx.X_train, ctx.y_train)
        training_sets[name] = (trainer.images_, trainer.labels_)
        distilled[name] = trainer.to_distilled_set()
    pick = stratified_split(ctx.y_train, [ctx.profile.ipc * ctx.n_classes], random_state=ctx.seed)[
        0
    ]
    training_sets["real"] = (normalize(ctx.X_train[pick], ctx.mean, ctx.std), ctx.y_train[pick])
    return training_sets, distilled


def _what_travels(ctx: _SeedContext, distilled: dict, sets_folder):
    """Compute what a distilled set's maker ships with it (issue 21).

    The calibration recipe of every distilled set, computed on a validation split of the
    training split (the maker's real data), saved with the set when ``sets_folder`` is given;
    or instead a few of those real images per class. Returns the plain student's template,
    the kept images by k, and the recipes as dicts by set.
    """
    profile, seed = ctx.profile, ctx.seed
    template = student_classifier(
        ctx.recipe, width=profile.width, epochs=profile.student_epochs, random_state=None,
        **ctx.shared,
    )  # fmt: skip
    validation = validation_split(ctx.y_train, profile.recipe_validation, seed)
    X_val, y_val = ctx.X_train[validation], ctx.y_train[validation]
    kept = {
        k: (normalize(X_val[index], ctx.mean, ctx.std), y_val[index].numpy())
        for k, index in kept_images(y_val, profile.kept_per_class, ctx.n_classes, seed).items()
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
    return template, kept, recipes


def _students_of(ctx: _SeedContext, is_distilled: bool):
    """Return the students of a training set: (name, mixup alpha, a transfer recipe's changes)."""
    profile = ctx.profile
    return (
        ("plain", 0.0, None),
        ("mixup", profile.mixup_alpha, None),
        *((t, 0.0, TRANSFER_RECIPES[t]) for t in profile.transfer if is_distilled),
    )


def _fit_student(ctx: _SeedContext, template, images, labels, name, alpha, changes):
    """Train one student: the experiment's own, or that of a transfer recipe."""
    if changes is None:
        return ctx.student(images, labels, alpha, ctx.profile.student_epochs)
    return transfer_student(template, name, changes).set_params(
        random_state=ctx.seed
    ).fit(images, labels)  # fmt: skip


def _calibrate_and_compare(ctx, fitted, sets, the_set, kept, changes, test_logits, watch):
    """Every calibrator row of one student, and the paired comparisons of a distilled set's.

    ``the_set`` is the distilled set the student was trained on, or None for the random real
    images. Returns the rows, the comparisons and the test probabilities by row.
    """
    profile, seed = ctx.profile, ctx.seed
    calibrated, probabilities = calibrate_student(
        fitted,
        sets,
        ctx.y_test,
        training_ratios=profile.training_ratios if changes is None else (),
        seed=seed,
        test_logits=test_logits,
        held_out_masked=changes is None,
    )
    pairs = []
    if the_set is not None:
        # what travels with a distilled set: its recipe, kept images
        extra, extra_proba = recipe_rows(
            fitted, the_set, kept, ctx.y_test, test_logits, seed=seed, quietly=_quietly,
            with_recipe=bool(profile.recipe_copies),
        )  # fmt: skip
        calibrated += extra
        probabilities.update(extra_proba)
        pairs = list(RECIPE_COMPARISONS) if profile.recipe_copies else []
    watch.lap("calibration")
    compared = []
    if the_set is not None:
        pairs = (list(COMPARISONS) if changes is None else []) + pairs
        compared = compare_rows(
            ctx.y_test, probabilities, seed, profile.bootstrap_resamples, pairs=pairs
        )
    watch.lap("evaluation")
    return calibrated, compared, probabilities


def _full_data_diagnostics(ctx: _SeedContext, watch: _Stopwatch) -> dict:
    """Train and diagnose the baseline of the paper's maximum-logit comparison.

    A network of the same architecture trained on the whole training split, with the same
    recipe, for :attr:`Profile.full_data_steps` batches of the student's batch size.
    """
    full_images = normalize(ctx.X_train, ctx.mean, ctx.std)
    steps_per_epoch = math.ceil(len(ctx.y_train) / StudentClassifier().batch_size)
    epochs = max(1, math.ceil(ctx.profile.full_data_steps / steps_per_epoch))
    full = ctx.student(full_images, ctx.y_train, 0.0, epochs)
    watch.lap("full-data network")
    full_test_logits = full.decision_function(ctx.test_images)
    diagnostics, _ = max_logit_diagnostics(
        full.network_, full_images, ctx.test_images, ctx.seed, test_logits=full_test_logits
    )
    diagnostics["scores"] = score_columns(ctx.y_test, torch.softmax(full_test_logits, dim=1))
    watch.lap("evaluation")
    return diagnostics


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
    watch = _Stopwatch()
    ctx = _seed_context(data, dataset, profile, seed, device, verbose)
    training_sets, distilled = _training_sets(ctx)
    watch.lap("distillation")
    template, kept, recipes = _what_travels(ctx, distilled, sets_folder)
    if profile.recipe_copies:
        watch.lap("recipes")

    rows, comparisons, diagnostics = [], [], {}
    for set_name, (images, labels) in training_sets.items():
        sets = {
            "train": (images, labels.numpy()),
            "cal": (ctx.cal_images, ctx.y_cal),
            "test": ctx.test_images,
        }
        the_set = distilled.get(set_name)
        for student_name, alpha, changes in _students_of(ctx, the_set is not None):
            fitted = _fit_student(ctx, template, images, labels, student_name, alpha, changes)
            watch.lap("students")
            # The test images' logits serve the calibrators and the diagnostics: one pass.
            test_logits = fitted.decision_function(ctx.test_images)
            calibrated, compared, probabilities = _calibrate_and_compare(
                ctx, fitted, sets, the_set, kept, changes, test_logits, watch
            )
            key = {"seed": seed, "training_set": set_name, "student": student_name}
            rows += [{**key, **row} for row in calibrated]
            comparisons += [{**key, **row} for row in compared]
            if student_name == "plain":
                diagnostics[set_name], spread = max_logit_diagnostics(
                    fitted.network_, images, ctx.test_images, seed, test_logits=test_logits
                )
                if figures is not None and set_name in ("DM", "real"):
                    figures[set_name] = (probabilities, spread)
                watch.lap("evaluation")
    diagnostics["full"] = _full_data_diagnostics(ctx, watch)
    return {
        "seed": seed,
        "rows": rows,
        "comparisons": comparisons,
        "diagnostics": diagnostics,
        "recipes": recipes,
        "stage_seconds": watch.seconds,
    }
