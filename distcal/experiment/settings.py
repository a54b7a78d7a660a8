"""What a run is made of: its sizes (profiles), the recipe of each dataset and the rows it shows.

This module is the one place that says which network depth and which augmentation go with
which dataset (:data:`DATASETS`); the experiment, the demo and the benchmarks read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .schema import HELD_OUT, NO_REGIME, TRAINING, RowKey, fixed_ratio_row

__all__ = [
    "COMPARISONS",
    "DATASETS",
    "DEMO",
    "DEMO_HELD_OUT",
    "DIAGNOSTIC_MASK",
    "MAIN_ROWS",
    "METRICS",
    "MTS_AUTO_HELD_OUT",
    "MTS_AUTO_TRAINING",
    "NONE",
    "PROFILES",
    "RECIPE",
    "RECIPE_COMPARISONS",
    "TRANSFER_RECIPES",
    "TS_HELD_OUT",
    "DatasetRecipe",
    "Profile",
    "dataset_recipe",
    "parse_seeds",
    "profile_by_name",
]

#: The score columns of every row (see :func:`distcal.experiment.score_columns`): keys of
#: :data:`~distcal.experiment.schema.SCORES`.
METRICS = ("accuracy", "ece10", "ece15", "nll", "brier", "confidence")

#: The rows the experiment's tables and comparisons name
#: (:class:`~distcal.experiment.schema.RowKey`).
NONE = RowKey("none", NO_REGIME)
TS_HELD_OUT = RowKey("TS", HELD_OUT)
MTS_AUTO_HELD_OUT = RowKey("MTS auto", HELD_OUT)
MTS_AUTO_TRAINING = RowKey("MTS auto", TRAINING)
RECIPE = RowKey("recipe", TRAINING)

#: Calibrator rows shown in the printed table (the CSV files hold every row).
MAIN_ROWS = (
    NONE,
    TS_HELD_OUT,
    MTS_AUTO_HELD_OUT,
    RowKey("TS", TRAINING),
    fixed_ratio_row(0.1),
    MTS_AUTO_TRAINING,
    RECIPE,
)

#: Pairs compared on every student of a distilled set (DM, MDT) of every seed by a paired
#: bootstrap over the test images (test ECE-15 of the first minus the second).
COMPARISONS = (
    (MTS_AUTO_TRAINING, NONE),
    (MTS_AUTO_TRAINING, TS_HELD_OUT),
    (MTS_AUTO_HELD_OUT, TS_HELD_OUT),
)

#: Pairs compared on every student of a distilled set that is calibrated with the set's recipe
#: (the plain and mixup students, and those of :data:`TRANSFER_RECIPES`).
RECIPE_COMPARISONS = (
    (RECIPE, TS_HELD_OUT),
    (NONE, RECIPE),
)

#: The masks of the maximum-logit diagnostics (the masking spread): (ratio, copies per image).
DIAGNOSTIC_MASK = (0.3, 4)


#: Students of recipes the proxies of a calibration recipe do not use (issue 21's transfer),
#: as changes to the experiment's plain student: a factor for epochs, learning rate and width,
#: an increment for depth. Each is trained on the DM and MDT sets of every seed (seed
#: ``seed``, as the plain student) and calibrated with and without the set's recipe.
TRANSFER_RECIPES = {
    "epochs x2": {"epochs": 2.0},
    "lr x0.5": {"lr": 0.5},
    "width x2": {"width": 2.0},
    "depth +1": {"depth": 1},
}


@dataclass(frozen=True)
class Profile:
    """The sizes of an experiment.

    Parameters
    ----------
    ipc : int
        Images per class of the distilled and the random real sets.
    width : int
        Channels of the ConvNet (distillation and students).
    iterations : int
        Distribution-matching iterations.
    batch_real : int
        Real images per class per distillation iteration.
    student_epochs : int
        Training epochs of every student.
    mixup_alpha : float
        Mixup's Beta parameter for the mixup students.
    mdt_ratio : float
        Mask ratio of the MDT distillation (masking both batches, as docs/benchmarks.md finds
        least harmful).
    training_ratios : tuple of float
        Fixed ratios of masked temperature scaling fitted on the training images (the regime
        "training"; rows "MTS 0.1", ...; the paper's ratio is 0.1). The row "MTS auto" uses
        ``mask_ratio="auto"``.
    full_data_steps : int
        SGD steps (batches of 256) of the network trained on the whole training split, the
        baseline of the maximum-logit diagnostics.
    bootstrap_resamples : int
        Resamples of the paired bootstrap intervals over the test images.
    recipe_copies : int
        Proxy students of each variation in the calibration recipe of every distilled set
        (:func:`distcal.distill.default_proxies`); 0 computes no recipe.
    recipe_validation : int
        Real validation images of the recipe: a stratified split of the training split (the
        distiller's data), at most this many.
    kept_per_class : tuple of int
        Real images per class kept beside the distilled set for the baseline rows "TS k
        real/class" (drawn from the recipe's validation images).
    transfer : tuple of str
        Keys of :data:`TRANSFER_RECIPES` trained on every distilled set.
    """

    ipc: int = 10
    width: int = 32
    iterations: int = 500
    batch_real: int = 64
    student_epochs: int = 300
    mixup_alpha: float = 1.0
    mdt_ratio: float = 0.1
    training_ratios: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    full_data_steps: int = 600
    bootstrap_resamples: int = 1000
    recipe_copies: int = 1
    recipe_validation: int = 5000
    kept_per_class: tuple = (1, 2, 5)
    transfer: tuple = tuple(TRANSFER_RECIPES)


PROFILES = {
    # Seconds: checks that the pipeline runs end to end; its numbers mean nothing.
    "smoke": Profile(
        ipc=2,
        width=8,
        iterations=5,
        batch_real=16,
        student_epochs=10,
        training_ratios=(0.1, 0.5),
        full_data_steps=10,
        bootstrap_resamples=20,
        recipe_copies=1,
        recipe_validation=200,
        kept_per_class=(1,),
        transfer=("lr x0.5",),
    ),
    # Minutes on 2 CPU cores for digits; tens of minutes for Fashion-MNIST.
    "small": Profile(),
    # The published evaluation settings (ConvNet-128, 1000 student epochs); meant for a GPU.
    "paper": Profile(
        width=128, iterations=1000, batch_real=256, student_epochs=1000, full_data_steps=5000
    ),
}

#: The demo (``distcal demo``): one student of the small profile's size (``ipc``, ``width``,
#: ``student_epochs``) trained on real digits instead of a distilled set, calibrated by the
#: experiment's calibrators less the fixed ratios. Nothing is distilled.
DEMO = Profile(training_ratios=(), recipe_copies=0, transfer=())

#: Held-out calibration images of the demo (the rest of digits, past the training images, is
#: its test split).
DEMO_HELD_OUT = 500


@dataclass(frozen=True)
class DatasetRecipe:
    """How networks are built and trained on one dataset, whoever trains them.

    Parameters
    ----------
    depth : int
        Convolutional blocks of the ConvNet (2 for 8x8 images, 3 for 28x28).
    augment : str
        Augmentation of distillation and of the students (a strategy of
        :class:`distcal.distill.StudentClassifier`).
    full_data_epochs : int
        Epochs of a student trained on the whole training split, where a run sizes it in
        epochs (the calibrator benchmark; the experiment's full-data network takes
        :attr:`Profile.full_data_steps` batches of the students' batch size with ``augment``
        instead).
    full_data_batch_size : int
        Batch size of that student.
    full_data_augment : str
        Augmentation of that student.
    n_masks : int
        Masked copies per image of masked temperature scaling where its cost matters.
    """

    depth: int
    augment: str
    full_data_epochs: int
    full_data_batch_size: int
    full_data_augment: str
    n_masks: int


DATASETS = {
    # Flips would turn some digits into others: DSA's strategy without them. The 898 training
    # images of a benchmark split give 15 steps per epoch in batches of 64.
    "digits": DatasetRecipe(
        depth=2,
        augment="color_crop_cutout_scale_rotate",
        full_data_epochs=30,
        full_data_batch_size=64,
        full_data_augment="color_crop_cutout_scale_rotate",
        n_masks=4,
    ),
    # 55,000 training images need no augmentation for a few epochs; one epoch costs minutes on
    # 2 CPU cores, and so does each masked copy of the held-out split.
    "fashion-mnist": DatasetRecipe(
        depth=3,
        augment="dsa",
        full_data_epochs=2,
        full_data_batch_size=256,
        full_data_augment="none",
        n_masks=1,
    ),
}


def dataset_recipe(dataset: str) -> DatasetRecipe:
    """Return the recipe of a dataset by name.

    Parameters
    ----------
    dataset : {"digits", "fashion-mnist"}
        The dataset's name.

    Returns
    -------
    DatasetRecipe
        Its entry of :data:`DATASETS`.

    Raises
    ------
    ValueError
        If the name is not a key of :data:`DATASETS`.

    Examples
    --------
    >>> dataset_recipe("digits").depth
    2
    """
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; valid names are {sorted(DATASETS)}.")
    return DATASETS[dataset]


def profile_by_name(profile: str | Profile) -> Profile:
    """Return a profile given by name, or a copy of one given as such.

    Parameters
    ----------
    profile : {"smoke", "small", "paper"} or Profile
        A key of :data:`PROFILES`, or the sizes themselves.

    Returns
    -------
    Profile
        The sizes.

    Raises
    ------
    ValueError
        If the name is not a key of :data:`PROFILES`.
    TypeError
        If ``profile`` is neither a name nor a :class:`Profile`.
    """
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"Unknown profile {profile!r}; valid names are {sorted(PROFILES)}.")
        return PROFILES[profile]
    if not isinstance(profile, Profile):
        raise TypeError(
            f"profile must be a name of PROFILES or a Profile; got {type(profile).__name__}."
        )
    return replace(profile)


def parse_seeds(text: str) -> list[int]:
    """Read seeds from the command line: ``"3"`` (seeds 0, 1, 2), ``"3-12"`` or ``"0,4,7"``.

    Parameters
    ----------
    text : str
        A count ``N`` (the seeds 0 to N-1), an inclusive range ``A-B``, or a comma-separated
        list of non-negative integers (``"5,"`` is the single seed 5).

    Returns
    -------
    list of int
        The seeds, in the order given, without repetitions.

    Raises
    ------
    ValueError
        If ``text`` is none of these forms.

    Examples
    --------
    >>> parse_seeds("3"), parse_seeds("3-6"), parse_seeds("0,4,7"), parse_seeds("5,")
    ([0, 1, 2], [3, 4, 5, 6], [0, 4, 7], [5])
    """
    text = text.strip()
    problem = (
        f"seeds must be a count N (seeds 0..N-1), a range A-B or a list A,B,C of non-negative "
        f"integers; got {text!r}"
    )
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        elif "-" in text.lstrip("-"):
            first, last = (int(part) for part in text.split("-"))
            if last < first:
                raise ValueError(problem)
            seeds = list(range(first, last + 1))
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ValueError(problem) from None
    if not seeds or min(seeds) < 0:
        raise ValueError(problem)
    return list(dict.fromkeys(seeds))
