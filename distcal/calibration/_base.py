"""What every calibrator over logits shares: validation, prediction methods, pickling, registry.

Conventions every calibrator follows (the common tests check them on every registered class):

- **Fitted attributes.** Array-valued fitted attributes are torch tensors on the device of the
  data given to ``fit`` (for a calibrator that runs a model: the device of the model's logits),
  in the dtype the fit computed them in (float64 for parameters). Scalar fitted attributes are
  Python scalars (``float``, ``int``, ``bool``, ``str`` or None). Two exceptions follow
  scikit-learn: ``classes_`` is a numpy array, and ``input_shape_`` (the shape of one input
  sample) is a tuple of ints. A fitted inner calibrator (``calibrator_``) is a calibrator.
- **Registry.** Every concrete public subclass of :class:`BaseLogitCalibrator` registers
  itself under its class name when it is defined (:func:`registered_calibrators`).
  :func:`~distcal.calibration.save_calibrator` and :func:`~distcal.calibration.load_calibrator`
  accept exactly the registered classes, and the common tests run on every registered class of
  distcal. Adding a calibrator is one module with one class (plus its tests): subclass
  :class:`BaseLogitCalibrator`, implement ``fit`` and ``_calibrate_logits``, follow the
  conventions above, and persistence and the common checks take it up.
- **Hooks.** What the rest of distcal needs to know of a calibrator it reads from the class,
  never from a list: ``_shift_invariant`` (the masked calibrators' model guard and
  ``calibrated_module``'s), ``_torch_head()`` and ``_fitted_map()`` (``calibrated_module``),
  ``_cli_name`` (``distcal calibrate --method``), ``_fits_log_probabilities`` (probability
  inputs with a zero). Each has a safe default, so a calibrator that declares none still
  fits, saves and loads; ``calibrated_module`` then refuses it, naming the missing head.
"""

from __future__ import annotations

import re
from abc import ABCMeta, abstractmethod
from types import MappingProxyType

import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._batches import BatchSource, Chunk, is_batches
from .._device import PortablePickleMixin, like
from .._params import validate_params
from .._softmax import softmax
from .._validation import Logits, check_label_probabilities

# Class name -> class, for every concrete public calibrator defined so far (see __init_subclass__).
_REGISTRY: dict[str, type] = {}


def _is_abstract(cls) -> bool:
    # ABCMeta records __abstractmethods__ only after __init_subclass__ has run, so look directly.
    return any(getattr(getattr(cls, n, None), "__isabstractmethod__", False) for n in dir(cls))


def registered_calibrators():
    """Return the registered calibrator classes: every concrete public calibrator defined so far.

    A class registers itself when it is defined, by subclassing :class:`BaseLogitCalibrator`
    (classes whose name starts with ``_`` and abstract classes are left out). Persistence
    (:func:`~distcal.calibration.save_calibrator`, :func:`~distcal.calibration.load_calibrator`)
    accepts exactly these classes, and the common tests run on those of distcal.

    Returns
    -------
    mapping
        A read-only view of class name -> class, in the order the classes were defined.

    Examples
    --------
    >>> from distcal.calibration import registered_calibrators
    >>> registered_calibrators()["TemperatureScaling"].__name__
    'TemperatureScaling'
    """
    return MappingProxyType(_REGISTRY)


def _check_cli_name(cls, where: str) -> None:
    """Refuse a ``_cli_name`` that is not a plain word, or that another calibrator holds."""
    name = cls._cli_name
    if name is None:
        return
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise TypeError(
            f"The _cli_name of {where} must be None or a lower-case word (letters, digits, "
            f"'-' and '_', starting with a letter), as typed after --method; got {name!r}."
        )
    for other_name, other in _REGISTRY.items():
        if other_name != cls.__name__ and other._cli_name == name:
            raise TypeError(
                f"The command-line name {name!r} of {where} is already the name of "
                f"{other.__module__}.{other.__qualname__}; choose another _cli_name."
            )


class BaseLogitCalibrator(PortablePickleMixin, ClassifierMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of calibrators that map logits to calibrated probabilities.

    Subclasses implement ``fit`` and ``_calibrate_logits``, which maps validated logits of shape
    (n_samples, n_classes) to calibrated logits of the same shape; those that compute calibrated
    probabilities directly also override ``_calibrate_proba``, so that ``predict_proba`` does not
    go through a log and back. Everything else (validation,
    ``predict_proba``, ``predict``, ``predict_log_proba``, ``decision_function``, pickling of
    tensors and modules across devices) lives here or in its mixins. Defining a concrete public
    subclass registers it (:func:`registered_calibrators`), which is all that saving, loading
    and the common tests need; its fitted attributes follow the convention of this module.

    Column ``j`` of the logits is class ``j``: labels are integers in ``[0, n_classes)``. Binary
    problems may be given as 1-D decision values ``z`` (or one column); they are treated as the
    two-class logits ``[0, z]``, so class 1 has probability ``sigmoid(z)``. For binary problems the
    confidence of a prediction is ``max(p, 1 - p)`` and it is correct when ``p > 0.5`` agrees
    with the label (ties go to class 0, as ``argmax`` does).
    """

    _parameter_constraints: dict = {}
    #: Constraints on scalar fitted attributes (as ``_parameter_constraints`` has for the
    #: parameters), checked when a calibrator is loaded from a file, so that a crafted file
    #: cannot set a temperature of 0 or -1.
    _fitted_constraints: dict = {}
    #: Tensor fitted attributes that may hold infinities by design (padding); every other
    #: floating fitted tensor must be finite in a loaded file.
    _fitted_may_be_infinite: frozenset = frozenset()
    #: Fewest distinct labels ``fit`` accepts. Calibrators whose classes are the logit columns
    #: and whose map is defined with any labels (a temperature) accept one, so that a fold of
    #: an unstratified cross-validation whose labels are one class still fits.
    _min_classes: int = 2
    #: Whether ``fit`` minimises the NLL of a map of the logits, which is undefined when
    #: probabilities (``input_type="probabilities"``) give a label exactly 0: such a fit
    #: refuses them (:func:`distcal._validation.check_label_probabilities`). Binning
    #: calibrators, which never take the log, set it to False.
    _fits_log_probabilities: bool = True
    # Hooks: what the rest of distcal asks of a calibrator. Each calibrator declares them in
    # its own file, and nothing lists calibrators by hand (docs/design.md, "Extending distcal").
    #: Whether the calibrated probabilities are unchanged by a constant added to every logit of
    #: a row (the map goes through a softmax first, as temperature scaling, Dirichlet
    #: calibration and the binning calibrators do): then log-probabilities calibrate as the
    #: logits do, and a model whose last layer is a ``log_softmax`` is not warned about (by the
    #: masked calibrators' ``model`` path and by ``calibrated_module``). False, the default,
    #: is the safe answer: it only adds that warning.
    _shift_invariant: bool = False
    #: The calibrator's name on the command line (``distcal calibrate --method NAME``), or None
    #: (the default) when the command does not offer it; the command's table of methods
    #: (``distcal.experiment.calibrate.METHODS``) reads it. Declared by each class, never
    #: inherited, and unique among the registered calibrators. The command fits the class
    #: built with its default parameters (and ``random_state`` when it has one).
    _cli_name: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("_") or _is_abstract(cls):
            return
        known = _REGISTRY.get(cls.__name__)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if known is not None and f"{known.__module__}.{known.__qualname__}" != where:
            raise TypeError(
                f"A calibrator named {cls.__name__!r} is already registered "
                f"({known.__module__}.{known.__qualname__}); calibrator files name classes by "
                f"their name, so calibrator names must be unique. Rename {where}."
            )
        if "_cli_name" not in cls.__dict__:
            cls._cli_name = None  # a command-line name is declared, not inherited
        _check_cli_name(cls, where)
        _REGISTRY[cls.__name__] = cls  # a redefinition (module reload) replaces the old class

    # ------------------------------------------------------------------ hooks
    def _fitted_map(self) -> BaseLogitCalibrator:
        """Return the fitted calibrator of the logits that this one applies: itself.

        Masked calibrators return their inner calibrator (the map fitted on masked logits and
        applied to clean ones), which is what :func:`calibrated_module` deploys.
        """
        return self

    def _torch_head(self):
        """Return the fitted map as an ``nn.Module`` for :func:`calibrated_module`, or None.

        A calibrator whose map is a few tensor operations returns a new module holding the
        fitted parameters as buffers: ``forward(z)`` maps logits of shape (batch, n_classes)
        to calibrated logits (as ``_calibrate_logits`` does) and ``proba(z)``, decorated with
        ``torch.jit.export``, to calibrated probabilities; both in the dtype of ``z``.
        distcal's heads are in :mod:`distcal.calibration._heads`; a new calibrator may use one
        of them or define its own in its file. None (the default) means
        :func:`calibrated_module` refuses the calibrator, naming it.
        """
        return None

    # ------------------------------------------------------------------ validation helpers
    def _validate_fit_inputs(self, X, y, sample_weight):
        """Validate parameters and data at the top of ``fit``; record input-shape attributes.

        The data come through the one batch source (:class:`distcal._batches.BatchSource`),
        checked once; ``X`` may also be a :class:`distcal._batches.Chunk` it has checked.
        """
        validate_params(self)
        if is_batches(X):
            name = type(self).__name__
            remedy = (
                f"use {name}().fit_batches(X), which streams them"
                if hasattr(self, "fit_batches")
                else "concatenate the batches' logits and labels (torch.cat) and call fit(X, y)"
            )
            raise TypeError(
                f"{name}.fit takes arrays of logits; X is a {type(X).__name__} of batches: "
                f"{remedy}."
            )
        chunk = self._logit_source(X, y, sample_weight).read()
        logits = chunk.logits
        self._record_input(logits)
        self._check_label_probabilities(logits, chunk.labels)
        return logits, chunk.labels, chunk.weights

    def _logit_source(self, X, y=None, sample_weight=None, **options) -> BatchSource:
        """Return the batch source of this calibrator's logits (its input type, class rule)."""
        options.setdefault("min_classes", self._min_classes)
        options.setdefault("owner", f"{type(self).__name__}.fit")
        return BatchSource(
            X,
            y,
            sample_weight,
            kind="logits",
            input_type=getattr(self, "input_type", "logits"),
            estimator=self,
            **options,
        )

    def _check_label_probabilities(self, logits: Logits, labels, name: str = "X") -> None:
        """Refuse probabilities that give a label exactly 0 (see ``_fits_log_probabilities``)."""
        if self._fits_log_probabilities and getattr(self, "input_type", None) == "probabilities":
            check_label_probabilities(logits, labels, owner=type(self).__name__, name=name)

    def _record_input(self, logits: Logits) -> None:
        n_classes = logits.values.shape[1]
        self.n_features_in_ = logits.n_features
        self.classes_ = torch.arange(n_classes).numpy()
        self._binary_1d = logits.binary_1d

    def _validate_predict_logits(self, X) -> Logits:
        """Validate logits given to a prediction method against what ``fit`` saw."""
        check_is_fitted(self)
        source = self._logit_source(X, with_labels=False, owner=f"{type(self).__name__}.predict")
        return self._check_fitted_columns(source.read().logits)

    def _check_fitted_columns(self, logits: Logits) -> Logits:
        """Refuse logits of another width than those ``fit`` saw."""
        if logits.binary_1d and not self._binary_1d:
            raise ValueError(
                f"X has 1 features, but {type(self).__name__} is expecting {self.n_features_in_} "
                "features as input (the logit columns it was fitted on); 1-D or single-column "
                "input is read as binary decision values. Reshape your data with "
                "X.reshape(1, -1) if X holds the logits of a single sample."
            )
        if logits.n_features != self.n_features_in_:
            raise ValueError(
                f"X has {logits.n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (the number of logit columns it was "
                "fitted on)."
            )
        return logits

    def _prediction_logits(self, X) -> Logits:
        """Return the (uncalibrated) logits that prediction methods work on."""
        return self._validate_predict_logits(X)

    @abstractmethod
    def _calibrate_logits(self, values: torch.Tensor) -> torch.Tensor:
        """Map validated logits of shape (n_samples, n_classes) to calibrated logits."""

    def _calibrate_proba(self, values: torch.Tensor) -> torch.Tensor:
        """Map validated logits to calibrated probabilities (softmax of the calibrated logits)."""
        return softmax(self._calibrate_logits(values))

    def _stream_prediction_logits(self, batches):
        """Logits of a stream of batches (inputs, or ``(inputs, labels)`` pairs), concatenated.

        Returns the validated logits and the first batch's inputs, whose container and device
        the results take.
        """
        check_is_fitted(self)
        owner = f"{type(self).__name__}.predict"
        chunk = self._logit_source(batches, with_labels=False, owner=owner).read()
        return self._check_fitted_columns(chunk.logits), chunk.reference

    def _calibrated(self, X, *, proba: bool = False):
        """Return the validated logits, their calibrated logits (or probabilities), the reference.

        The reference is what the result's container and device follow: ``X``, or the first
        batch of a stream.
        """
        if is_batches(X):
            logits, reference = self._stream_prediction_logits(X)
        else:
            logits = self._prediction_logits(X)
            reference = X.reference if isinstance(X, Chunk) else X
        values = logits.values.to(torch.promote_types(logits.values.dtype, torch.float32))
        if proba:
            return logits, self._calibrate_proba(values), reference
        return logits, self._calibrate_logits(values), reference

    # ------------------------------------------------------------------ prediction methods
    def decision_function(self, X):
        """Return calibrated logits.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
            Logits (or model inputs, for calibrators that own a model). Or a stream of
            batches of them (a ``DataLoader``, an iterator, a list of ``(X, y)`` pairs; the
            labels are ignored): the results are concatenated, in the container of the first
            batch.

        Returns
        -------
        ndarray or Tensor of shape (n_samples, n_classes) or (n_samples,)
            Calibrated logits, in the container and on the device of ``X``. Binary 1-D input
            gives 1-D calibrated decision values (the log-odds of class 1).
        """
        logits, calibrated, reference = self._calibrated(X)
        if logits.binary_1d:
            calibrated = calibrated[:, 1] - calibrated[:, 0]
        return like(calibrated, reference)

    def predict_proba(self, X):
        """Return calibrated class probabilities.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
            Logits (or model inputs, for calibrators that own a model). Or a stream of
            batches of them (a ``DataLoader``, an iterator, a list of ``(X, y)`` pairs; the
            labels are ignored): the results are concatenated, in the container of the first
            batch.

        Returns
        -------
        ndarray or Tensor of shape (n_samples, n_classes)
            Probabilities in the container and on the device of ``X``, in its floating dtype
            (float16 and bfloat16 are promoted to float32). Binary input gives two columns.
        """
        _, probabilities, reference = self._calibrated(X, proba=True)
        return like(probabilities, reference)

    def predict_log_proba(self, X):
        """Return the logarithm of the calibrated class probabilities.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
            Logits (or model inputs, for calibrators that own a model). Or a stream of
            batches of them (a ``DataLoader``, an iterator, a list of ``(X, y)`` pairs; the
            labels are ignored): the results are concatenated, in the container of the first
            batch.

        Returns
        -------
        ndarray or Tensor of shape (n_samples, n_classes)
            Log-probabilities, computed with a stable ``log_softmax``.
        """
        _, calibrated, reference = self._calibrated(X)
        return like(torch.log_softmax(calibrated, dim=1), reference)

    def predict(self, X):
        """Return the predicted class of each sample (the index of the largest logit).

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
            Logits (or model inputs, for calibrators that own a model). Or a stream of
            batches of them (a ``DataLoader``, an iterator, a list of ``(X, y)`` pairs; the
            labels are ignored): the results are concatenated, in the container of the first
            batch.

        Returns
        -------
        ndarray or Tensor of shape (n_samples,)
            Class labels (integers), in the container and on the device of ``X``.
        """
        _, calibrated, reference = self._calibrated(X)
        return like(calibrated.argmax(dim=1), reference)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_label = False
        return tags
