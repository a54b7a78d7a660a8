"""Several students of one architecture trained as one batched computation.

:func:`fit_students` stacks the students' parameters (``torch.func.stack_module_state``) and
runs their forward and backward passes as one vectorised call (``torch.vmap`` over
``torch.func.functional_call``), so a batch of small networks costs little more than one. Each
student keeps its own random streams, drawn in the order of :meth:`StudentClassifier.fit`: the
seed of its weights, of its batch order (and mixup partners) and of its augmentation come from
its ``random_state``, its mixup weights from the same numpy generator. A student trained here
therefore follows the trajectory of the same student trained alone, up to float rounding (the
batched convolution sums in another order).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .._device import draw_seed, make_generator, resolve_device
from .._params import validate_params
from .._progress import progress
from .._validation import is_soft_targets, record_input_shape
from ._augment import make_augment
from ._data import check_samples
from ._networks import build_network
from ._student import StudentClassifier

__all__ = ["fit_students"]

# Parameters that every student of one batch must share: they fix the architecture, the number
# of SGD steps and the learning-rate schedule, and the device of the one computation.
_SHARED = ("network", "width", "depth", "epochs", "batch_size")


class _Plan:
    """One student's validated data and random streams, drawn as StudentClassifier.fit draws."""

    def __init__(self, index: int, student, X, y, dtype: torch.dtype):
        if not isinstance(student, StudentClassifier):
            raise TypeError(
                f"students[{index}] must be a StudentClassifier; got {type(student).__name__}."
            )
        validate_params(student)
        if y is None:
            raise ValueError(f"datasets[{index}] has y=None; a student needs labels.")
        if is_soft_targets(y):
            raise ValueError(
                f"datasets[{index}] has soft labels (a float array of shape "
                f"{tuple(y.shape)}); fit_students trains on class indices only. Fit students "
                "of soft labels one at a time with StudentClassifier.fit."
            )
        images, labels = check_samples(X, y, name=f"datasets[{index}][0]")
        n_classes = student._n_classes_of(labels, where=f"datasets[{index}]: ")
        self.student = student
        self.n_classes = n_classes
        self.device = resolve_device(student.device, X)
        # The draws of StudentClassifier.fit, in its order: weights, batch order, augmentation.
        self.rng = np.random.default_rng(draw_seed(student.random_state))
        self.network = build_network(
            student.network,
            input_shape=tuple(images.shape[1:]),
            n_classes=n_classes,
            random_state=int(self.rng.integers(2**31)),
            device=self.device,
            **student._network_kwargs(),
        ).to(dtype)
        self.order_generator = make_generator(int(self.rng.integers(2**31)))
        self.augmenter = make_augment(student.augment, default=images.ndim == 4, per_sample=True)
        if self.augmenter is not None and images.ndim != 4:
            raise ValueError(
                f"students[{index}] has augment={student.augment!r}, which needs images of shape "
                f"(n, channels, height, width); got samples of shape "
                f"{tuple(images.shape[1:])}. Use augment='none'."
            )
        self.augment_generator = make_generator(int(self.rng.integers(2**31)), self.device)
        self.images = images.to(device=self.device, dtype=torch.float32).to(dtype)
        self.labels = labels.to(self.device)
        self.learning_rates = _learning_rates(student)

    def signature(self) -> dict:
        """Return what must agree across the batch, by name."""
        student = self.student
        signature = {name: getattr(student, name) for name in _SHARED}
        if student.network == "convnet":
            signature["norm"] = student.norm
        signature["n_classes"] = self.n_classes
        signature["number of samples"] = self.images.shape[0]
        signature["sample shape"] = tuple(self.images.shape[1:])
        signature["device"] = self.device
        return signature


def _learning_rates(student) -> list[float]:
    """Return the learning rate of each epoch, read from the scheduler StudentClassifier uses."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=student.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[student.epochs // 2], gamma=0.1
    )
    rates = []
    for _ in range(student.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _check_batchable(plans: list[_Plan]) -> None:
    first = plans[0].signature()
    for plan_index, plan in enumerate(plans[1:], start=1):
        for name, value in plan.signature().items():
            if value != first[name]:
                raise ValueError(
                    f"The students cannot be trained as one batch: their {name} differs "
                    f"(students[0] has {first[name]!r}, students[{plan_index}] has {value!r}). "
                    f"Batch only students that share {', '.join(first)}, or fit them separately."
                )


def _column(values, like: torch.Tensor, ndim: int) -> torch.Tensor:
    """Per-student scalars as a tensor shaped to broadcast over (n_students, ...)."""
    column = torch.tensor(values, dtype=like.dtype, device=like.device)
    return column.view(-1, *([1] * (ndim - 1)))


def fit_students(students, datasets):
    """Train several students of one architecture as one batched computation.

    Each student is trained as :meth:`StudentClassifier.fit` would train it on its dataset,
    with its own ``random_state`` (weights, batch order, mixup weights and partners,
    augmentation), its own ``lr``, ``momentum``, ``weight_decay``, ``mixup_alpha``,
    ``label_smoothing`` and ``augment``; the forward and backward passes of all students run as
    one vectorised call over their stacked parameters (``torch.vmap`` of
    ``torch.func.functional_call``). A student trained here matches the same student trained
    alone up to float rounding, since the batched convolutions sum in another order.

    Parameters
    ----------
    students : list of StudentClassifier
        Unfitted or fitted students (they are refitted). They must share ``network``,
        ``width``, ``depth``, ``norm`` (ConvNet), ``epochs``, ``batch_size``, the number of
        classes, the device, and the number and shape of their training samples.
    datasets : list of (X, y)
        One training set per student, as :meth:`StudentClassifier.fit` takes them.

    Returns
    -------
    list of StudentClassifier
        ``students``, each fitted (``network_``, ``history_``, ``classes_``,
        ``input_shape_``, ``device_``): they predict, save and load as usual.

    Raises
    ------
    ValueError
        When the lists differ in length or are empty, a dataset is invalid, or the students
        cannot be batched (the message names the parameter that differs).

    Examples
    --------
    >>> from distcal.distill import StudentClassifier, fit_students, load_digits
    >>> data = load_digits()
    >>> students = [
    ...     StudentClassifier(width=8, depth=2, epochs=2, random_state=seed, mixup_alpha=alpha)
    ...     for seed, alpha in ((0, 0.0), (1, 0.0), (0, 1.0))
    ... ]
    >>> sets = [(data.images[:100], data.labels[:100])] * 3
    >>> fitted = fit_students(students, sets)
    >>> fitted[2].decision_function(data.images[:3]).shape
    torch.Size([3, 10])
    """
    return _fit_students(students, datasets, dtype=torch.float32)


def _fit_students(students, datasets, *, dtype: torch.dtype):
    """:func:`fit_students` computing in ``dtype`` (float64: the reference of the tests)."""
    if not isinstance(students, list | tuple) or not isinstance(datasets, list | tuple):
        raise TypeError(
            "students and datasets must be lists (one (X, y) pair per student); got "
            f"{type(students).__name__} and {type(datasets).__name__}."
        )
    if len(students) == 0:
        raise ValueError("students is empty; pass at least one StudentClassifier.")
    if len(students) != len(datasets):
        raise ValueError(
            f"students and datasets must have the same length (one (X, y) pair per student); "
            f"got {len(students)} students and {len(datasets)} datasets."
        )
    plans = []
    for index, (student, data) in enumerate(zip(students, datasets, strict=True)):
        if not isinstance(data, list | tuple) or len(data) != 2:
            raise ValueError(
                f"datasets[{index}] must be an (X, y) pair; got {type(data).__name__}."
            )
        plans.append(_Plan(index, student, data[0], data[1], dtype))
    _check_batchable(plans)
    _train(plans)
    for plan in plans:
        student = plan.student
        student.network_ = plan.network.eval()
        student.classes_ = np.arange(plan.n_classes)
        record_input_shape(student, plan.images)
        student.device_ = plan.device
    return list(students)


def _train(plans: list[_Plan]) -> None:
    first = plans[0]
    epochs, batch_size = first.student.epochs, first.student.batch_size
    n_students, n_samples = len(plans), first.images.shape[0]
    device = first.device
    params, buffers = torch.func.stack_module_state([plan.network for plan in plans])
    params = {name: value.detach().requires_grad_(True) for name, value in params.items()}
    base = plans[0].network

    def forward(p, b, x):
        return torch.func.functional_call(base, (p, b), (x,))

    batched_forward = torch.vmap(forward, in_dims=(0, 0, 0), randomness="error")
    images = torch.stack([plan.images for plan in plans])
    labels = torch.stack([plan.labels for plan in plans])
    some = next(iter(params.values()))
    momentum = {
        n: _column([p.student.momentum for p in plans], some, v.ndim) for n, v in params.items()
    }
    decay = {
        n: _column([p.student.weight_decay for p in plans], some, v.ndim) for n, v in params.items()
    }
    velocity = {name: torch.zeros_like(value) for name, value in params.items()}
    smoothing = _column([p.student.label_smoothing for p in plans], some, 2)
    uses_mixup = [plan.student.mixup_alpha > 0 for plan in plans]
    augment_groups: dict[str, list[int]] = {}
    for index, plan in enumerate(plans):
        if plan.augmenter is not None:
            augment_groups.setdefault(plan.student.augment, []).append(index)
    histories = [[] for _ in plans]
    rows = torch.arange(n_students, device=device)[:, None]
    verbose = any(plan.student.verbose for plan in plans)
    for epoch in progress(range(epochs), enabled=verbose, desc="students"):
        orders = torch.stack(
            [torch.randperm(n_samples, generator=plan.order_generator) for plan in plans]
        ).to(device)
        rates = {
            n: _column([p.learning_rates[epoch] for p in plans], some, v.ndim)
            for n, v in params.items()
        }
        totals = [0.0] * n_students
        for start in range(0, n_samples, batch_size):
            batch = orders[:, start : start + batch_size]
            size = batch.shape[1]
            x, target = images[rows, batch], labels[rows, batch]
            weights, partners = [], []
            for plan, mixes in zip(plans, uses_mixup, strict=True):
                if mixes:
                    alpha = plan.student.mixup_alpha
                    weights.append(float(plan.rng.beta(alpha, alpha)))
                    partners.append(torch.randperm(size, generator=plan.order_generator))
                else:
                    weights.append(1.0)
                    partners.append(torch.arange(size))
            partner = torch.stack(partners).to(device)
            if any(uses_mixup):
                lam = _column(weights, x, x.ndim)
                mixed = lam * x + _column([1 - w for w in weights], x, x.ndim) * x[rows, partner]
                mixing = torch.tensor(uses_mixup, device=device).view(-1, *([1] * (x.ndim - 1)))
                x = torch.where(mixing, mixed, x)
            if augment_groups:
                x = _augment(plans, augment_groups, x)
            logits = batched_forward(params, buffers, x)
            log_p = F.log_softmax(logits, dim=-1)
            smooth = -log_p.mean(-1)

            def per_sample(t, log_p=log_p, smooth=smooth):
                nll = -log_p.gather(-1, t.unsqueeze(-1)).squeeze(-1)
                return (1 - smoothing) * nll + smoothing * smooth

            lam = torch.tensor(weights, dtype=logits.dtype, device=device)
            losses = lam * per_sample(target).mean(1) + (1 - lam) * per_sample(
                target[rows, partner]
            ).mean(1)
            grads = torch.autograd.grad(losses.sum(), list(params.values()))
            with torch.no_grad():
                for (name, value), grad in zip(params.items(), grads, strict=True):
                    step = grad + decay[name] * value
                    velocity[name].mul_(momentum[name]).add_(step)
                    value.sub_(rates[name] * velocity[name])
            for index, loss in enumerate(losses.detach().tolist()):
                totals[index] += loss * size
        for index, history in enumerate(histories):
            history.append({"epoch": epoch + 1, "loss": totals[index] / n_samples})
    with torch.no_grad():
        for index, plan in enumerate(plans):
            state = {name: value[index] for name, value in {**params, **buffers}.items()}
            for name, tensor in plan.network.state_dict().items():
                tensor.copy_(state[name])
            plan.student.history_ = histories[index]


def _augment(plans, groups: dict[str, list[int]], x: torch.Tensor) -> torch.Tensor:
    """Augment each student's batch with parameters from its own generator, one call per group.

    Students with the same strategy have their parameters drawn one by one (each from its own
    stream, in the order StudentClassifier draws them) and applied to all their images at once:
    every parameter row transforms its own image only.
    """
    out = x.clone() if len(groups) > 1 or sum(map(len, groups.values())) < len(plans) else None
    size = x.shape[1]
    for indices in groups.values():
        augmenter = plans[indices[0]].augmenter
        drawn = [augmenter.sample(size, plans[i].augment_generator) for i in indices]
        params = {key: torch.cat([d[key] for d in drawn]) for key in drawn[0]}
        chosen = x[indices].flatten(0, 1)
        result = augmenter.apply(chosen, params).view(len(indices), *x.shape[1:])
        if out is None:
            return result
        out[indices] = result
    return out
