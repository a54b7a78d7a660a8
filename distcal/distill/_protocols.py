"""Evaluation protocols of the distillation literature, as presets of the student recipe.

A protocol says how the students that score a distilled set are trained. The numbers were read
from each repository's code (files named in :class:`Protocol`); where distcal's
:class:`~distcal.distill.StudentClassifier` differs from a repository in a detail, the
difference is written next to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ._student import StudentClassifier

__all__ = ["PROTOCOLS", "Protocol", "protocol_by_name"]


@dataclass(frozen=True)
class Protocol:
    """How students are trained on a distilled set: one preset of the student recipe.

    The presets of :data:`PROTOCOLS`, with their sources:

    - ``"dc"``: the DatasetCondensation repository (VICO-UoE/DatasetCondensation) evaluating
      DSA and DM sets: ``main.py`` (``--method DSA``) and ``main_DM.py`` set
      ``epoch_eval_train = 1000``, ``lr_net = 0.01``, ``batch_train = 256`` and the DSA
      strategy ``color_crop_cutout_flip_scale_rotate``; ``utils.py::evaluate_synset`` trains
      with SGD (momentum 0.9, weight decay 5e-4) and multiplies the learning rate by 0.1 at the
      middle; ``networks.py`` and ``utils.py::get_default_convnet_setting`` give ConvNet width
      128, depth 3, instance norm, average pooling. The sets have no learned learning rate.
    - ``"mtt"``: mtt-distillation (GeorgeCazenavette/mtt-distillation): ``distill.py``
      (``--epoch_eval_train 1000``, ``--batch_train 256``, ``--dsa True`` with the same
      strategy) and ``utils.py::evaluate_synset`` (the same SGD and step); the learning rate is
      the learned one (``args.lr_net = syn_lr.item()``), which MTT logs but does not save.
    - ``"datm"``: DATM (NUS-HPC-AI-Lab/DATM) ``distill/evaluation.py``: ``--batch_train 128``,
      1000 epochs, the learned learning rate of ``lr_best.pt``, soft labels trained with
      ``SoftCrossEntropy`` (``utils/utils_baseline.py::evaluate_synset``: the same SGD and
      step).
    - ``"dd-ranking"``: DD-Ranking (NUS-HPC-AI-Lab/DD-Ranking)
      ``configs/Demo_LRS_Hard_Label.yaml``: ``ConvNet-3`` (``ddranking/utils/model.py``: width
      128, depth 3, instance norm, average pooling), SGD (momentum 0.9, weight decay
      5e-4), ``default_lr 0.01``, step scheduler of ``step_size 500`` (x0.1), 1000 epochs,
      ``syn_batch_size 128``, DSA with its default parameters; the set's learning rate when
      one is given (``compute_metrics(syn_lr=...)``). Without one DD-Ranking searches the
      learning rate in {0.001, ..., 0.1} by test accuracy and reports the best test accuracy
      over epochs; distcal does neither (it never chooses on test data) and uses 0.01.
    - ``"small"``: distcal's CPU-sized recipe (the ``small`` profile of ``distcal run``):
      width 32, 300 epochs, batch 256, learning rate 0.01 (or the learned one), the depth and
      augmentation of the dataset (``distcal.experiment.settings.DATASETS``: depth 2 and no
      flips for 8x8 digits, depth 3 and DSA for Fashion-MNIST).

    Every repository loops ``for ep in range(Epoch + 1)`` and divides the learning rate after
    epoch ``Epoch // 2 + 1``; :class:`StudentClassifier` trains ``epochs`` epochs and divides
    after ``epochs // 2``, one epoch apart at both ends. DSA is distcal's
    :class:`~distcal.distill.SiameseAugment` (the repositories' ``DiffAugment``, the same
    operations and default parameters).

    Parameters
    ----------
    name : str
        The preset's name.
    width : int
        Channels of the ConvNet.
    depth : int or None
        Convolution blocks; None takes the dataset's.
    norm : str
        Normalisation of the ConvNet.
    epochs : int
        Training epochs.
    batch_size : int
        Images per SGD step.
    lr : float
        The learning rate when the set has no learned one (or ``learned_lr`` is False).
    momentum : float
        SGD momentum.
    weight_decay : float
        SGD weight decay.
    augment : str or None
        The augmentation (a :class:`StudentClassifier` ``augment``); None takes the dataset's.
    learned_lr : bool
        Use the set's learned learning rate where it has one.
    soft_label_loss : str
        The loss of soft labels (see :class:`StudentClassifier`).
    soft_label_temperature : float
        Its temperature.
    source : str
        Where the numbers come from.
    """

    name: str
    width: int
    depth: int | None
    norm: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    augment: str | None
    learned_lr: bool
    soft_label_loss: str
    soft_label_temperature: float
    source: str

    def student(
        self, *, depth: int | None = None, augment: str | None = None, learning_rate=None, **options
    ) -> StudentClassifier:
        """Return an unfitted student of this protocol.

        Parameters
        ----------
        depth : int or None, default=None
            The depth where the protocol leaves it to the dataset (required then).
        augment : str or None, default=None
            The augmentation where the protocol leaves it to the dataset (required then).
        learning_rate : float or None, default=None
            The set's learned learning rate; used if the protocol uses learned rates.
        **options
            Further parameters of :class:`StudentClassifier` (``random_state``,
            ``n_classes``, ``device``, soft-label options that override the protocol's).

        Returns
        -------
        StudentClassifier
            The student, to fit on the set.
        """
        depth = self.depth if self.depth is not None else depth
        augment = self.augment if self.augment is not None else augment
        for name, value in (("depth", depth), ("augment", augment)):
            if value is None:
                raise ValueError(
                    f"Protocol {self.name!r} takes the {name} from the dataset: pass {name}=."
                )
        params = {
            "width": self.width,
            "depth": depth,
            "norm": self.norm,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.learning_rate(learning_rate),
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "augment": augment,
            "soft_label_loss": self.soft_label_loss,
            "soft_label_temperature": self.soft_label_temperature,
        }
        params.update(options)
        return StudentClassifier("convnet", **params)

    def learning_rate(self, learned=None) -> float:
        """Return the learning rate of a set whose learned rate is ``learned`` (or None).

        Parameters
        ----------
        learned : float or None, default=None
            The set's learned learning rate.

        Returns
        -------
        float
            ``learned`` if the protocol uses learned rates and there is one, else :attr:`lr`.
        """
        return float(learned) if (self.learned_lr and learned is not None) else self.lr

    def as_dict(self) -> dict:
        """Return the preset's fields as a dict (for configurations and reports).

        Returns
        -------
        dict
            Field name to value.
        """
        return asdict(self)


_REPOSITORY = {
    "width": 128,
    "depth": 3,
    "norm": "instancenorm",
    "epochs": 1000,
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "augment": "dsa",
    "soft_label_loss": "cross-entropy",
    "soft_label_temperature": 1.0,
}

#: The protocols by name; :class:`Protocol` gives the source of each.
PROTOCOLS = {
    "dc": Protocol(
        "dc",
        batch_size=256,
        learned_lr=False,
        source="VICO-UoE/DatasetCondensation main_DM.py, main.py (DSA), utils.py, networks.py",
        **_REPOSITORY,
    ),
    "mtt": Protocol(
        "mtt",
        batch_size=256,
        learned_lr=True,
        source="GeorgeCazenavette/mtt-distillation distill.py, utils.py::evaluate_synset",
        **_REPOSITORY,
    ),
    "datm": Protocol(
        "datm",
        batch_size=128,
        learned_lr=True,
        source="NUS-HPC-AI-Lab/DATM distill/evaluation.py, utils/utils_baseline.py",
        **_REPOSITORY,
    ),
    "dd-ranking": Protocol(
        "dd-ranking",
        batch_size=128,
        learned_lr=True,
        source="NUS-HPC-AI-Lab/DD-Ranking configs/Demo_LRS_Hard_Label.yaml, "
        "ddranking/metrics/hard_label.py, ddranking/utils/model.py",
        **_REPOSITORY,
    ),
    "small": Protocol(
        "small",
        width=32,
        depth=None,
        norm="instancenorm",
        epochs=300,
        batch_size=256,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        augment=None,
        learned_lr=True,
        soft_label_loss="cross-entropy",
        soft_label_temperature=1.0,
        source="distcal: the small profile (distcal.experiment.settings.PROFILES, DATASETS)",
    ),
}


def protocol_by_name(protocol) -> Protocol:
    """Return a protocol given by name, or the one given.

    Parameters
    ----------
    protocol : str or Protocol
        A key of :data:`PROTOCOLS`, or a protocol.

    Returns
    -------
    Protocol
        The protocol.

    Raises
    ------
    ValueError
        If the name is not a key of :data:`PROTOCOLS`.

    Examples
    --------
    >>> protocol_by_name("mtt").batch_size, protocol_by_name("datm").batch_size
    (256, 128)
    """
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; valid names are {sorted(PROTOCOLS)}.")
    return PROTOCOLS[protocol]
