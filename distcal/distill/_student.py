"""Students: networks trained on (distilled) images, as scikit-learn classifiers."""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._device import PortablePickleMixin, draw_seed, like, make_generator, resolve_device
from .._files import FORMAT_VERSION, read_tensors, write_tensors
from .._modules import run_module
from .._params import Interval, Options, validate_params
from .._progress import progress
from .._validation import check_input_shape, check_soft_targets, is_soft_targets, record_input_shape
from ._augment import make_augment
from ._data import check_samples
from ._networks import NETWORKS, build_network

__all__ = ["StudentClassifier", "load_student"]


class StudentClassifier(PortablePickleMixin, ClassifierMixin, BaseEstimator):
    """Train a network from the registry on images, with the dataset-distillation recipe.

    The recipe of the distillation literature's evaluation: SGD with momentum 0.9 and weight
    decay 5e-4, learning rate divided by 10 at half the epochs, mini-batches of ``batch_size``,
    differentiable siamese augmentation of the images.
    Labels are class indices (cross-entropy), or soft labels: one row of class scores (logits)
    per image, as DATM stores them, whose softmax is the target (``soft_label_loss``).
    ``mixup_alpha > 0`` trains with mixup (one mixing weight per batch, drawn from
    ``Beta(alpha, alpha)``, applied before augmentation), the calibration baseline of Zhu et al.
    The trained network's logits (``decision_function``) go straight into
    :class:`~distcal.TemperatureScaling` or :class:`~distcal.MaskedTemperatureScaling`, or pass
    ``network_`` as their ``model``.

    Parameters
    ----------
    network : str, default="convnet"
        A key of :data:`distcal.distill.NETWORKS`.
    width : int, default=128
        Channels (ConvNet) or hidden units (MLP).
    depth : int, default=3
        Convolution blocks (ConvNet) or hidden layers (MLP). Use 2 for 8x8 images.
    norm : {"instancenorm", "batchnorm", "layernorm", "none"}, default="instancenorm"
        Normalisation of the ConvNet.
    epochs : int, default=300
        Passes over the training images.
    batch_size : int, default=256
        Images per SGD step.
    lr : float, default=0.01
        Initial learning rate (divided by 10 after ``epochs // 2`` epochs).
    momentum : float, default=0.9
        SGD momentum.
    weight_decay : float, default=5e-4
        L2 penalty of SGD.
    mixup_alpha : float, default=0.0
        Mixup's Beta parameter; 0 trains without mixup.
    label_smoothing : float, default=0.0
        Label smoothing of the cross-entropy, in [0, 1); hard labels only.
    soft_label_loss : {"cross-entropy", "kl"}, default="cross-entropy"
        The loss when ``y`` holds soft labels (a float array of shape (n, n_classes)), with
        ``t`` the soft labels, ``s`` the network's logits and ``T`` the temperature:
        ``"cross-entropy"`` is ``-sum(softmax(t / T) * log_softmax(s / T))`` averaged over the
        batch (DATM's ``SoftCrossEntropy``, with ``T = 1``); ``"kl"`` is the Kullback-Leibler
        divergence ``KL(softmax(t / T) || softmax(s / T))`` averaged over the batch
        (DD-Ranking's ``KLDivergenceLoss`` without its ``T**2`` scaling). The two differ by the
        targets' entropy, a constant, so they have the same gradients. Unused with hard labels.
    soft_label_temperature : float, default=1.0
        ``T`` above: the temperature of both softmaxes of the soft-label loss.
    augment : str, default="auto"
        Differentiable siamese augmentation of every training batch (after mixup):
        ``"auto"`` applies DSA's full strategy to images (4-D inputs) and nothing to other
        inputs, ``"dsa"`` the full strategy, ``"none"`` nothing, and any other string is a
        :class:`~distcal.distill.SiameseAugment` strategy (for digits, where flips change the
        class, ``"color_crop_cutout_scale_rotate"``).
    n_classes : int or None, default=None
        Number of output logits; None uses ``max(y) + 1``.
    device : str, torch.device or None, default=None
        Where to train; None follows ``X`` (its device if it is a tensor, else the CPU).
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the batch order and the mixup weights.
    verbose : bool, default=False
        Show a progress bar over epochs.

    Attributes
    ----------
    network_ : torch.nn.Module
        The trained network, in eval mode, on ``device_``.
    history_ : list of dict
        Per epoch: ``epoch`` and mean training ``loss``.
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    input_shape_ : tuple of int
        Shape (C, H, W) of the training images.
    device_ : torch.device
        Where the network lives.

    Examples
    --------
    >>> from distcal.distill import StudentClassifier, load_digits
    >>> data = load_digits()
    >>> student = StudentClassifier(width=8, depth=2, epochs=2, random_state=0)
    >>> student.fit(data.images[:100], data.labels[:100]).decision_function(data.images[:3]).shape
    torch.Size([3, 10])
    """

    _parameter_constraints = {
        "network": [Options(*NETWORKS)],
        "width": [Interval(numbers.Integral, 1, None, closed="left")],
        "depth": [Interval(numbers.Integral, 1, None, closed="left")],
        "norm": [Options("instancenorm", "batchnorm", "layernorm", "none")],
        "epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "mixup_alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "label_smoothing": [Interval(numbers.Real, 0, 1, closed="left")],
        "soft_label_loss": [Options("cross-entropy", "kl")],
        "soft_label_temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "augment": [str],
        "n_classes": [None, Interval(numbers.Integral, 2, None, closed="left")],
        "device": [None, "device"],
        "random_state": ["random_state"],
        "verbose": ["boolean"],
    }

    def __init__(
        self,
        network="convnet",
        *,
        width=128,
        depth=3,
        norm="instancenorm",
        epochs=300,
        batch_size=256,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        mixup_alpha=0.0,
        label_smoothing=0.0,
        soft_label_loss="cross-entropy",
        soft_label_temperature=1.0,
        augment="auto",
        n_classes=None,
        device=None,
        random_state=None,
        verbose=False,
    ):
        self.network = network
        self.width = width
        self.depth = depth
        self.norm = norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.mixup_alpha = mixup_alpha
        self.label_smoothing = label_smoothing
        self.soft_label_loss = soft_label_loss
        self.soft_label_temperature = soft_label_temperature
        self.augment = augment
        self.n_classes = n_classes
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _network_kwargs(self) -> dict:
        kwargs = {"width": self.width, "depth": self.depth}
        if self.network == "convnet":
            kwargs["norm"] = self.norm
        return kwargs

    def _n_classes_of(self, labels: torch.Tensor, where: str = "") -> int:
        """Check the labels of a fit (two classes at least, within ``n_classes``); count them.

        ``where`` prefixes the messages (``"datasets[2]: "`` when several students fit).
        """
        low, high = int(labels.min()), int(labels.max())
        if low == high:
            raise ValueError(
                f"{where}y contains only one class ({low}); a classifier needs samples of at "
                "least 2 classes."
            )
        n_classes = self.n_classes if self.n_classes is not None else high + 1
        if high >= n_classes:
            raise ValueError(
                f"{where}y contains label {high}, but n_classes={n_classes}: labels must be in "
                f"[0, {n_classes - 1}]."
            )
        return n_classes

    def fit(self, X, y):
        """Train the network on images.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, channels, height, width)
            Training images (for instance a distilled set); with ``network="mlp"`` any shape
            (n_samples, ...), feature vectors included.
        y : array-like or Tensor of shape (n_samples,) or (n_samples, n_classes)
            Class indices, or soft labels: float class scores (logits) whose softmax is each
            image's target distribution, trained with ``soft_label_loss``.

        Returns
        -------
        self : StudentClassifier
            The fitted student.
        """
        validate_params(self)
        if y is None:
            raise ValueError("StudentClassifier requires y to be passed, but the target y is None.")
        soft = is_soft_targets(y)
        if soft:
            images = check_samples(X)[0]
            labels = check_soft_targets(
                y, n_samples=images.shape[0], n_classes=self.n_classes, x_name="X"
            )
            if self.label_smoothing > 0:
                raise ValueError(
                    "label_smoothing applies to hard labels; y holds soft labels. Set "
                    "label_smoothing=0."
                )
            n_classes = labels.shape[1]
        else:
            images, labels = check_samples(X, y)
            n_classes = self._n_classes_of(labels)
        # One seed for the weights, the batch order and the mixup weights.
        rng = np.random.default_rng(draw_seed(self.random_state))
        device = resolve_device(self.device, X)
        network = build_network(
            self.network,
            input_shape=tuple(images.shape[1:]),
            n_classes=n_classes,
            random_state=int(rng.integers(2**31)),
            device=device,
            **self._network_kwargs(),
        )
        images = images.to(device=device, dtype=torch.float32)
        labels = labels.to(device)
        optimizer = torch.optim.SGD(
            network.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[self.epochs // 2], gamma=0.1
        )
        order_generator = make_generator(int(rng.integers(2**31)))
        augmenter = make_augment(self.augment, default=images.ndim == 4, per_sample=True)
        if augmenter is not None and images.ndim != 4:
            raise ValueError(
                f"augment={self.augment!r} needs images of shape (n, channels, height, width); "
                f"got samples of shape {tuple(images.shape[1:])}. Use augment='none'."
            )
        augment_generator = make_generator(int(rng.integers(2**31)), device)
        if soft:
            loss_fn = _SoftLabelLoss(self.soft_label_loss, self.soft_label_temperature)
        else:
            loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        n_samples = images.shape[0]
        self.history_ = []
        network.train()
        for epoch in progress(range(self.epochs), enabled=self.verbose, desc="student"):
            order = torch.randperm(n_samples, generator=order_generator).to(device)
            total = 0.0
            for start in range(0, n_samples, self.batch_size):
                batch = order[start : start + self.batch_size]
                x, target = images[batch], labels[batch]
                if self.mixup_alpha > 0:
                    lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
                    partner = torch.randperm(len(batch), generator=order_generator).to(device)
                    x = lam * x + (1 - lam) * x[partner]
                if augmenter is not None:
                    x = augmenter(x, generator=augment_generator)
                if self.mixup_alpha > 0:
                    logits = network(x)
                    loss = lam * loss_fn(logits, target) + (1 - lam) * loss_fn(
                        logits, target[partner]
                    )
                else:
                    loss = loss_fn(network(x), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            scheduler.step()
            self.history_.append({"epoch": epoch + 1, "loss": total / n_samples})
        self.network_ = network.eval()
        self.classes_ = np.arange(n_classes)
        record_input_shape(self, images)
        self.device_ = device
        return self

    def save(self, path) -> Path:
        """Write the trained student to a safetensors file (atomic; no pickle).

        The file holds the network's weights, the specification that rebuilds it, the
        parameters and the training history; :func:`load_student` reads it back.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        check_is_fitted(self)
        params = self.get_params(deep=False)
        params["device"] = None if params["device"] is None else str(params["device"])
        if not (params["random_state"] is None or isinstance(params["random_state"], int)):
            raise ValueError(
                "Cannot save a StudentClassifier whose random_state is a "
                f"{type(params['random_state']).__name__}: set it to an int or None first."
            )
        spec = {
            "name": self.network,
            "input_shape": list(self.input_shape_),
            "n_classes": len(self.classes_),
            **self._network_kwargs(),
        }
        metadata = {
            "kind": "student",
            "format_version": FORMAT_VERSION,
            "spec": spec,
            "params": params,
            "history": self.history_,
        }
        return write_tensors(path, dict(self.network_.state_dict()), metadata)

    def decision_function(self, X):
        """Return the network's logits, computed in batches on its device.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, channels, height, width)
            Images.

        Returns
        -------
        ndarray or Tensor of shape (n_samples, n_classes)
            Logits, in the container (and on the device) of ``X``.
        """
        check_is_fitted(self)
        inputs = check_input_shape(X, self)
        return like(run_module(self.network_, inputs, batch_size=self.batch_size), X)

    def predict_proba(self, X):
        """Return softmax probabilities (uncalibrated).

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, channels, height, width)
            Images.

        Returns
        -------
        ndarray or Tensor of shape (n_samples, n_classes)
            Class probabilities (softmax of the logits), in the container of ``X``.
        """
        logits = self.decision_function(X)
        if isinstance(logits, torch.Tensor):
            return torch.softmax(logits, dim=1)
        return like(torch.softmax(torch.from_numpy(logits), dim=1), logits)

    def predict(self, X):
        """Return the predicted class indices.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, channels, height, width)
            Images.

        Returns
        -------
        ndarray or Tensor of shape (n_samples,)
            The class with the largest logit, in the container of ``X``.
        """
        logits = self.decision_function(X)
        return logits.argmax(1) if isinstance(logits, torch.Tensor) else logits.argmax(axis=1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags


class _SoftLabelLoss:
    """The loss of soft labels (class scores), averaged over the batch; see StudentClassifier."""

    def __init__(self, kind: str, temperature: float):
        self.kind = kind
        self.temperature = float(temperature)

    def __call__(self, logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        log_q = torch.log_softmax(logits / self.temperature, dim=1)
        if self.kind == "kl":
            log_p = torch.log_softmax(scores / self.temperature, dim=1)
            return torch.nn.functional.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
        target = torch.softmax(scores / self.temperature, dim=1)
        return -(target * log_q).sum(dim=1).mean()


def load_student(path, *, device=None) -> StudentClassifier:
    """Load a student written by :meth:`StudentClassifier.save`, ready to predict.

    Parameters
    ----------
    path : str or path
        The file.
    device : str, torch.device or None, default=None
        Where to put the network (None: the CPU).

    Returns
    -------
    StudentClassifier
        The fitted student with its weights, parameters and history.

    Raises
    ------
    ValueError
        The file is truncated, tampered with or not a student.
    """
    tensors, metadata = read_tensors(path, kind="student")
    try:
        spec, params = dict(metadata["spec"]), dict(metadata["params"])
        student = StudentClassifier(**params)
        name = spec.pop("name")
        input_shape = tuple(spec.pop("input_shape"))
        network = build_network(
            name, input_shape=input_shape, random_state=0, device=device, **spec
        )
        network.load_state_dict(tensors)
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable distcal student: {exc}") from exc
    student.network_ = network.eval()
    student.classes_ = np.arange(spec["n_classes"])
    student.input_shape_ = input_shape
    if len(input_shape) == 1:
        student.n_features_in_ = input_shape[0]
    student.history_ = list(metadata.get("history", []))
    student.device_ = resolve_device(device)
    return student
