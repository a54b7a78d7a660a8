"""Temperature scaling: the solver and the estimator.

The negative log-likelihood of ``softmax(beta * z)`` is convex in the inverse temperature
``beta = 1 / T``: its first derivative is ``E_p[z] - z_y``, its second the variance of ``z`` under
``p`` and its third the third central moment, summed over samples. The solver finds the root of
the first derivative with Halley's method (Newton's with the curvature of the derivative, cubic
convergence) on ``u = log(beta)``, so ``T > 0`` by construction, safeguarded by a bracket:
the derivative is increasing in ``u``, so its sign says on which side the root lies. Each
iteration is one pass over the logits in row chunks, accumulating float64 sums, so no
full-size temporary is made and tensors stay on their device. Before iterating, the same pass
checks whether a finite optimum exists at all.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import torch

from .._batches import one_shot_error
from .._device import row_chunks
from .._distributed import (
    agree,
    agree_settings,
    all_reduce,
    check_distributed,
    raise_if_any_failed,
)
from .._params import Interval, Options, validate_params
from .._validation import check_weight_total
from ..exceptions import ConvergenceWarning, UncalibratableDataWarning
from ._base import BaseLogitCalibrator
from ._heads import TemperatureHead

__all__ = ["TemperatureFit", "TemperatureScaling", "fit_temperature", "temperature_statistics"]

# The temperature is searched in [1e-6, 1e6]; the bracket is in u = log(1 / T).
_LOG_T_BOUND = math.log(1e6)

_REMEDY = (
    "Calibrate on held-out data the network was not trained on, or use "
    "MaskedTemperatureScaling, whose masked inputs are no longer separable."
)


@dataclass
class TemperatureFit:
    """Result of :func:`fit_temperature`.

    Parameters
    ----------
    temperature : float
        The fitted temperature.
    nll : float
        Weighted mean negative log-likelihood at ``temperature``.
    n_iter : int
        Passes over the data (each computes the loss and its first three derivatives).
    converged : bool
        Whether the last step fell below ``tol`` at a finite optimum inside the bounds.
    status : str
        ``"optimum"``, ``"max_iter"``, ``"bound"`` (the optimum lies outside [1e-6, 1e6]),
        ``"separable"`` (no finite optimum: T -> 0), ``"uninformative"`` (T -> inf) or
        ``"constant"`` (every row's logits are equal, so T has no effect).
    """

    temperature: float
    nll: float
    n_iter: int
    converged: bool
    status: str


def temperature_statistics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    beta: float,
    *,
    limits: bool = False,
) -> torch.Tensor:
    """One pass over the logits: weighted sums that determine the temperature fit.

    Parameters
    ----------
    logits : Tensor of shape (n_samples, n_classes)
        Logits in any floating dtype; each chunk is converted to float64.
    labels : Tensor of shape (n_samples,)
        Class indices (``torch.long``) on the same device.
    weights : Tensor of shape (n_samples,) or None
        Non-negative float64 weights.
    beta : float
        Inverse temperature at which to evaluate.
    limits : bool, default=False
        Also return the derivative's limits as ``beta -> 0`` and ``beta -> inf``.

    Returns
    -------
    Tensor of shape (5,) or (7,), float64
        ``[weight_sum, loss_sum, d_loss, d2_loss, d3_loss]`` (derivatives with respect to
        ``beta``), then with ``limits`` ``[d_loss(beta=0), d_loss(beta=inf)]``. Sums add across
        chunks, batches and processes, which is what streaming and distributed fits rely on.
    """
    n_samples, n_classes = logits.shape
    device = logits.device
    n_stats = 7 if limits else 5
    totals = torch.zeros(n_stats, dtype=torch.float64, device=device)
    chunks = list(row_chunks(n_samples, n_classes, device))
    # Two float64 scratch buffers, reused by every chunk: no allocation churn, no full-size copy.
    z_buffer = torch.empty((chunks[0].stop, n_classes), dtype=torch.float64, device=device)
    e_buffer = torch.empty_like(z_buffer)
    for rows in chunks:
        n_rows = rows.stop - rows.start
        c, e = z_buffer[:n_rows], e_buffer[:n_rows]
        c.copy_(logits[rows])
        c.sub_(c.amax(dim=1, keepdim=True))  # z - max(z) <= 0, so exp cannot overflow
        c_true = c.gather(1, labels[rows, None]).squeeze(1)
        torch.mul(c, beta, out=e).exp_()
        s = e.sum(dim=1)
        m1 = e.mul_(c).sum(dim=1).div_(s)  # E_p[c]
        m2 = e.mul_(c).sum(dim=1).div_(s)  # E_p[c^2]
        m3 = e.mul_(c).sum(dim=1).div_(s)  # E_p[c^3]
        # Centred on the row maximum, the central moments below do not cancel catastrophically
        # when p concentrates on the largest logit (then every raw moment is near 0).
        m1_squared = m1 * m1
        per_sample = [
            s.log_().sub_(c_true, alpha=beta),
            m1 - c_true,
            m2 - m1_squared,
            m3.sub_(m1 * m2, alpha=3).add_(m1_squared * m1, alpha=2),
        ]
        if limits:
            per_sample += [c.mean(dim=1).sub_(c_true), c_true.neg()]
        stacked = torch.stack(per_sample)
        w = weights[rows] if weights is not None else None
        totals[0] += float(n_rows) if w is None else w.sum()
        totals[1:] += stacked.sum(dim=1) if w is None else stacked @ w
    return totals


def fit_temperature(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    tol: float = 1e-6,
    max_iter: int = 100,
    statistics=None,
) -> TemperatureFit:
    """Fit the temperature minimising the weighted NLL of ``softmax(logits / T)``.

    Parameters
    ----------
    logits : Tensor of shape (n_samples, n_classes)
        Logits in any floating dtype, on any device (the sums are taken in float64).
    labels : Tensor of shape (n_samples,)
        Class indices (``torch.long``) on the device of ``logits``.
    weights : Tensor of shape (n_samples,) or None
        Non-negative float64 weights; None weighs every sample equally.
    tol : float, default=1e-6
        Stop when a step changes ``log(T)`` by less than ``tol``. Halley's method converges
        cubically, so the error left is of order ``tol ** 3`` (``tol ** 2`` after a Newton
        fallback step).
    max_iter : int, default=100
        Maximum number of passes over the data.
    statistics : callable, default=None
        ``statistics(beta, limits) -> Tensor`` as returned by :func:`temperature_statistics`.
        Given, it replaces the in-memory pass (streaming and distributed fits plug in here);
        ``logits``, ``labels`` and ``weights`` are then ignored.

    Returns
    -------
    TemperatureFit
        The temperature, the NLL there, the passes made and whether (and how) the fit
        converged.

    Raises
    ------
    ValueError
        If the NLL or its derivatives are NaN or infinite at any pass (NaN or infinite logits
        or weights, or an overflow): no fit is reported converged on a non-finite objective.
    """
    if statistics is None:

        def statistics(beta, limits):
            return temperature_statistics(logits, labels, weights, beta, limits=limits)

    lo, hi = -_LOG_T_BOUND, _LOG_T_BOUND  # bracket on u = log(beta) = -log(T)
    u = 0.0
    n_iter = 0
    converged = False
    status = "max_iter"
    for n_iter in range(1, max_iter + 1):
        beta = math.exp(u)
        values = statistics(beta, n_iter == 1).tolist()
        if not all(math.isfinite(value) for value in values):
            raise ValueError(_non_finite_message(n_iter, beta, values))
        weight_sum, loss, grad, hess, skew = values[:5]
        nll = loss / weight_sum
        if n_iter == 1:
            grad_at_zero, grad_at_inf = values[5], values[6]
            if grad_at_inf <= 0:
                # Every sample's label holds the largest logit: the loss decreases for ever as
                # T -> 0 (or, for constant rows, T has no effect at all).
                if grad_at_zero >= 0:
                    return TemperatureFit(1.0, nll, n_iter, False, "constant")
                return TemperatureFit(math.exp(-_LOG_T_BOUND), nll, n_iter, False, "separable")
            if grad_at_zero >= 0:
                return TemperatureFit(math.exp(_LOG_T_BOUND), nll, n_iter, False, "uninformative")
        if grad < 0:
            lo = u
        elif grad > 0:
            hi = u
        else:
            converged, status = True, "optimum"
            break
        step = _safeguarded_step(grad, beta * hess, beta * hess + beta * beta * skew)
        if abs(step) <= tol:
            # Converged: the root lies within the step (a step this small may round onto the
            # bracket's edge, which must not trigger a bisection).
            u += step
            converged, status = True, "optimum"
            break
        u_next = u + step
        if not lo < u_next < hi:
            u_next = 0.5 * (lo + hi)  # the step left the bracket: bisect instead
        u = u_next
    if converged and (u - tol <= -_LOG_T_BOUND or u + tol >= _LOG_T_BOUND):
        converged, status = False, "bound"
    return TemperatureFit(math.exp(-u), nll, n_iter, converged, status)


def _non_finite_message(n_iter: int, beta: float, values: list) -> str:
    """Say where the temperature fit met a NaN or an infinity, and what to check."""
    nll = values[1] / values[0] if values[0] else float("nan")
    if n_iter == 1:
        return (
            f"fit_temperature: the NLL at T = 1 is {nll:.6g} and its derivatives are not all "
            "finite: the logits (or the weights) hold NaN or infinite values. A network that "
            "returns them for some inputs cannot be calibrated on those inputs; check its "
            "outputs (torch.isfinite(logits).all(dim=1) finds the rows)."
        )
    return (
        f"fit_temperature: the NLL or its derivatives overflowed at T = {1 / beta:.6g} (pass "
        f"{n_iter}); the fit is stopped rather than reported converged. Rescale the logits."
    )


def _safeguarded_step(f: float, slope: float, curvature: float) -> float:
    """Halley's step for the root of ``f(u)``, falling back to Newton's, then to infinity.

    ``slope`` and ``curvature`` are the first and second derivatives of ``f``. Halley's step is
    used when it points the same way as Newton's (its denominator is positive); an infinite step
    makes the caller bisect its bracket.
    """
    if slope <= 0:
        return math.inf
    newton = -f / slope
    denominator = 2 * slope * slope - f * curvature
    if denominator > 0:
        return -2 * f * slope / denominator
    return newton


def _warn_for_fit(result: TemperatureFit, owner: str, max_iter: int, stacklevel: int) -> None:
    """Turn a fit that is not a clean optimum into a warning that names the remedy."""
    if result.status == "separable":
        message = (
            f"{owner}: the logits separate the calibration data perfectly (every sample's label "
            "has the largest logit), so the NLL keeps falling as the temperature goes to 0 and "
            f"has no minimum. temperature_ is set to the lower bound {result.temperature:.1e}, "
            "which is not a calibrated temperature. This happens when a network is calibrated "
            f"on data it was trained on (a distilled set, for instance). {_REMEDY}"
        )
        warnings.warn(message, UncalibratableDataWarning, stacklevel=stacklevel)
    elif result.status == "constant":
        warnings.warn(
            f"{owner}: every row of the logits is constant, so the temperature has no effect and "
            "cannot be fitted; temperature_ is set to 1.",
            UncalibratableDataWarning,
            stacklevel=stacklevel,
        )
    elif result.status == "uninformative":
        warnings.warn(
            f"{owner}: on average the labels' logits lie below the mean logit, so the NLL is "
            "minimised by the uniform prediction (T -> inf); temperature_ is set to the upper "
            f"bound {result.temperature:.1e}. Check that the labels match the logit columns.",
            UncalibratableDataWarning,
            stacklevel=stacklevel,
        )
    elif result.status == "bound":
        warnings.warn(
            f"{owner}: the optimal temperature lies at or beyond the search bound "
            f"({result.temperature:.3g} is outside [1e-6, 1e6] or on its edge). {_REMEDY}",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    elif result.status == "max_iter":
        warnings.warn(
            f"{owner}: the temperature fit did not converge in max_iter={max_iter} passes; the "
            f"last temperature is {result.temperature:.6g}. Increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )


class _StreamedStatistics:
    """The solver's passes over a stream of logits, for :meth:`TemperatureScaling.fit_batches`.

    Called as ``statistics(beta, limits)`` by :func:`fit_temperature`, one pass at a time. A
    pass reads every batch through the calibrator's batch source (each batch checked as it
    arrives; nothing is kept), sums its :func:`temperature_statistics`, then, distributed, sums
    them over the processes, and checks that the pass read the samples of the first.

    Parameters
    ----------
    calibrator : TemperatureScaling
        The calibrator being fitted (its input type, class rule, label check).
    batches : iterable or callable
        The stream, re-iterable.
    distributed : bool
        Whether the statistics are summed over a process group.
    """

    def __init__(self, calibrator, batches, *, distributed: bool):
        self.calibrator = calibrator
        self.owner = f"{type(calibrator).__name__}.fit_batches"
        self.distributed = distributed
        self.source = calibrator._logit_source(batches, owner=self.owner, reiterable=True)
        self.n_samples = None  # samples of the first pass (over all processes)
        self.columns = None  # (n_classes, binary_1d, n_features), agreed over processes
        self.first_logits = None  # this process's first batch, whose shape fit records

    def __call__(self, beta: float, limits: bool) -> torch.Tensor:
        """Make one pass; return the summed statistics (with the limits on the first)."""
        if self.distributed:
            totals, n_samples = self._pass_over_processes(beta, limits)
        else:
            totals, n_samples = self._local_pass(beta, limits)
        if limits:
            self.n_samples = n_samples
        else:
            self._check_same_samples(n_samples)
        return totals

    def _local_pass(self, beta: float, limits: bool):
        """Sum this process's batches: the statistics and the samples read."""
        totals = torch.zeros(7 if limits else 5, dtype=torch.float64)
        n_samples = 0
        # The first pass applies the rules on the whole data (weights, classes), except where
        # the data are spread over processes (_pass_over_processes applies them to the sum).
        allow_empty = self.distributed or not limits
        for index, chunk in enumerate(self.source.chunks(allow_empty=allow_empty)):
            if self.first_logits is None:
                self.first_logits = chunk.logits
                self.columns = (chunk.values.shape[1], chunk.binary_1d, chunk.n_features)
            self.calibrator._check_label_probabilities(
                chunk.logits, chunk.labels, name=f"batches[{index}][0]"
            )
            totals += temperature_statistics(
                chunk.values, chunk.labels, chunk.weights, beta, limits=limits
            ).cpu()
            n_samples += len(chunk)
        return totals, n_samples

    def _pass_over_processes(self, beta: float, limits: bool):
        """Sum every process's pass; every process raises if one failed (no hang)."""
        error, totals, n_samples = None, None, 0
        try:
            totals, n_samples = self._local_pass(beta, limits)
        except Exception as exc:  # every process must learn of it
            error = exc
        raise_if_any_failed(error, self.owner)
        agreed = agree(
            self.columns,
            3,
            self.owner,
            "the logit columns (classes, binary decision values, features)",
        )
        if agreed is None:
            raise ValueError(
                "batches is empty on every process: there is no batch to fit the temperature on."
            )
        self.columns = (int(agreed[0]), bool(agreed[1]), int(agreed[2]))
        summed = all_reduce(torch.cat([totals, totals.new_tensor([n_samples])]))
        totals, n_samples = summed[:-1], int(summed[-1])
        if limits:
            check_weight_total(float(totals[0]))
        return totals, n_samples

    def _check_same_samples(self, n_samples: int) -> None:
        """Refuse a later pass that read other samples than the first (or none)."""
        if n_samples == 0 and self.n_samples and not self.distributed:
            why = (
                "The solver reads the batches once per pass (a few passes, n_iter_), so "
                "they must be readable again."
            )
            raise one_shot_error(self.owner, self.n_samples, why)
        if n_samples != self.n_samples:
            raise ValueError(
                f"batches changed between passes: the first pass read {self.n_samples} "
                f"samples and a later one {n_samples}. The solver reads the batches several "
                "times; they must hold the same samples every time."
            )

    def record_input(self, calibrator) -> None:
        """Set the input attributes of ``calibrator`` from the logits the passes read."""
        if self.first_logits is not None:
            calibrator._record_input(self.first_logits)
            return
        n_classes, binary, n_features = self.columns  # a process without batches
        calibrator.n_features_in_ = n_features
        calibrator.classes_ = torch.arange(n_classes).numpy()
        calibrator._binary_1d = binary


class TemperatureScaling(BaseLogitCalibrator):
    """Temperature scaling: calibrated probabilities ``softmax(logits / T)``.

    The temperature ``T`` minimises the (weighted) negative log-likelihood of the calibration
    data. It is found by a bracketed Halley iteration (Newton's method with curvature) on
    ``log(1 / T)`` with float64 statistics, which reaches the exact optimum in a few passes over
    the data and keeps ``T`` positive by construction. Tensors are processed on their own
    device, in chunks, without a copy of the logits to the host. Temperature scaling leaves the
    predicted class, the accuracy and the ranking of the samples unchanged.

    Parameters
    ----------
    input_type : {"logits", "probabilities"}, default="logits"
        What ``X`` holds. Logits are the network's outputs before the softmax. Probabilities
        are accepted only when this says so; they are converted with ``log(p)``. Logits that
        look like probabilities raise a :class:`~distcal.exceptions.ProbabilityInputWarning`.
    tol : float, default=1e-6
        Convergence tolerance on ``log(T)``: the fit stops when a step is smaller. The
        iteration converges cubically, so the error left is of order ``tol ** 3``.
    max_iter : int, default=100
        Maximum number of passes over the data.

    Attributes
    ----------
    temperature_ : float
        The fitted temperature.
    nll_ : float
        Weighted mean negative log-likelihood of the calibration data at ``temperature_``.
    n_iter_ : int
        Number of passes over the data.
    converged_ : bool
        Whether a finite optimum inside [1e-6, 1e6] was reached within ``tol``. When it is
        False a warning said why.
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``: column ``j`` of the logits is class ``j``.
    n_features_in_ : int
        Number of logit columns seen in ``fit`` (1 for binary 1-D decision values).

    See Also
    --------
    MaskedTemperatureScaling : Temperature fitted on masked inputs, for networks trained on
        distilled data.
    sklearn.calibration.CalibratedClassifierCV : The calibrators of scikit-learn, around an
        estimator.

    Notes
    -----
    If every calibration sample is classified correctly, the NLL decreases for ever as
    ``T -> 0``; no temperature is optimal. This is what happens on the data a network was trained
    on. The fit then warns with :class:`~distcal.exceptions.UncalibratableDataWarning`, sets
    ``converged_ = False`` and returns the lower bound 1e-6, never a bound posing as an optimum.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern Neural
       Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal import TemperatureScaling
    >>> logits = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    >>> y = np.array([0, 1, 0, 0])  # three right, one wrong: p = 3/4 is calibrated
    >>> ts = TemperatureScaling().fit(logits, y)
    >>> round(ts.temperature_, 6)  # 4 / ln(3)
    3.640957
    >>> ts.predict_proba(logits)[0]
    array([0.75, 0.25])
    >>> ts.predict(logits)
    array([0, 1, 0, 1])
    """

    _fitted_constraints = {
        "temperature_": [Interval(numbers.Real, 0, None, closed="neither")],
    }
    _min_classes = 1
    _shift_invariant = True
    _cli_name = "ts"
    _parameter_constraints = {
        "input_type": [Options("logits", "probabilities")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, *, input_type="logits", tol=1e-6, max_iter=100):
        self.input_type = input_type
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y=None, sample_weight=None):
        """Fit the temperature on calibration logits.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
            Logits of the calibration samples (numpy or torch, on any device), or 1-D binary
            decision values.
        y : array-like or Tensor of shape (n_samples,)
            Labels: integers in ``[0, n_classes)`` indexing the columns of ``X``. (Required;
            it defaults to None only so that ``fit(loader)`` can say to use
            :meth:`fit_batches`.)
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weights; None weighs every sample equally.

        Returns
        -------
        self : TemperatureScaling
            The fitted calibrator.
        """
        logits, labels, weights = self._validate_fit_inputs(X, y, sample_weight)
        return self._fit_logits(logits.values, labels, weights)

    def fit_batches(self, batches, *, distributed=False):
        """Fit the temperature on calibration logits that arrive in batches.

        Only one batch is in memory at a time: each pass of the solver reads every batch and
        adds up the batch's float64 statistics (:func:`temperature_statistics`), which sum
        exactly across batches. The result is the temperature :meth:`fit` finds on all the
        logits at once, up to floating-point summation order. Batches may sit on different
        devices; each is processed where it is.

        Parameters
        ----------
        batches : iterable or callable
            Batches ``(logits, y)`` or ``(logits, y, sample_weight)``, each as :meth:`fit`
            takes them: a ``DataLoader``, a list, or a function without arguments returning a
            new iterator of batches (how to stream from a generator). The solver reads them a
            few times (``n_iter_`` passes), so a one-shot generator is refused; the batches may
            come in a different order on each pass (a shuffling ``DataLoader``), but must hold
            the same samples.
        distributed : bool, default=False
            Under ``torchrun``, with a process group initialised: ``batches`` is this process's
            shard (a ``DataLoader`` with a ``DistributedSampler``), the statistics of every pass
            are summed over all processes, and every process gets the temperature of the whole
            data. A process may have no batch at all. If one process fails (bad data), every
            process raises instead of waiting for it.

        Returns
        -------
        self : TemperatureScaling
            The fitted calibrator.

        Examples
        --------
        >>> import numpy as np
        >>> from distcal import TemperatureScaling
        >>> rng = np.random.default_rng(0)
        >>> logits = 3 * rng.normal(size=(1000, 5))
        >>> y = (logits / 3 + rng.gumbel(size=(1000, 5))).argmax(axis=1)  # y ~ softmax(logits / 3)
        >>> batches = [(logits[i : i + 100], y[i : i + 100]) for i in range(0, 1000, 100)]
        >>> streamed = TemperatureScaling().fit_batches(batches)
        >>> in_memory = TemperatureScaling().fit(logits, y)
        >>> bool(np.isclose(streamed.temperature_, in_memory.temperature_, rtol=1e-12))
        True
        """
        validate_params(self)
        owner = f"{type(self).__name__}.fit_batches"
        if distributed:
            check_distributed(owner)
            agree_settings(self.get_params(deep=False), owner)
        passes = _StreamedStatistics(self, batches, distributed=distributed)
        result = fit_temperature(
            None, None, None, tol=self.tol, max_iter=self.max_iter, statistics=passes
        )
        passes.record_input(self)
        return self._store_fit(result, stacklevel=4)

    def _fit_logits(self, values, labels, weights, *, stacklevel=4):
        result = fit_temperature(values, labels, weights, tol=self.tol, max_iter=self.max_iter)
        return self._store_fit(result, stacklevel=stacklevel + 1)

    def _store_fit(self, result: TemperatureFit, *, stacklevel: int):
        _warn_for_fit(result, type(self).__name__, self.max_iter, stacklevel)
        self.temperature_ = float(result.temperature)
        self.nll_ = float(result.nll)
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        return self

    def _calibrate_logits(self, values: torch.Tensor) -> torch.Tensor:
        return values / self.temperature_

    def _torch_head(self):
        return TemperatureHead(float(self.temperature_))
