"""Vector scaling, matrix scaling (ODIR) and Dirichlet calibration against independent fits."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from distcal.calibration import DirichletCalibration, MatrixScaling, VectorScaling
from distcal.exceptions import UncalibratableDataWarning


def _data(n=3000, k=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k))
    mix = np.eye(k) + 0.3 * rng.normal(size=(k, k))
    y = (z @ mix.T + 0.5 * rng.normal(size=k) + rng.gumbel(size=(n, k))).argmax(axis=1)
    return 3 * z, y


def _naive(features, y, *, diagonal, reg_lambda=0.0, reg_mu=0.0, weights=None):
    """A plain float64 scipy fit of the same objective (the independent reference)."""
    n, k = features.shape
    w = np.full(n, 1 / n) if weights is None else weights / weights.sum()
    off = ~np.eye(k, dtype=bool)

    def unpack(theta):
        scale = theta[:k] if diagonal else theta[: k * k].reshape(k, k)
        return scale, theta[-k:]

    def objective(theta):
        scale, bias = unpack(theta)
        scores = features * scale + bias if diagonal else features @ scale.T + bias
        loss = -(log_softmax(scores, axis=1)[np.arange(n), y] * w).sum()
        if not diagonal:
            loss += reg_lambda * (scale[off] ** 2).mean()
        return loss + reg_mu * (bias**2).mean()

    start = np.concatenate([np.ones(k) if diagonal else np.eye(k).ravel(), np.zeros(k)])
    result = minimize(objective, start, method="BFGS", options={"gtol": 1e-10, "maxiter": 5000})
    return unpack(result.x)


def test_vector_scaling_matches_a_naive_fit():
    z, y = _data()
    vs = VectorScaling().fit(z, y)
    scale, bias = _naive(z, y, diagonal=True)
    np.testing.assert_allclose(vs.coef_.numpy(), scale, atol=1e-4)
    np.testing.assert_allclose(vs.intercept_.numpy(), bias, atol=1e-4)
    assert vs.converged_


def test_matrix_scaling_without_penalty_is_multinomial_logistic_regression():
    z, y = _data(seed=1)
    ms = MatrixScaling().fit(z, y)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(z, y)
    np.testing.assert_allclose(ms.predict_proba(z), reference.predict_proba(z), atol=1e-5)


def test_dirichlet_calibration_is_logistic_regression_on_log_probabilities():
    z, y = _data(seed=2)
    dc = DirichletCalibration().fit(z, y)
    features = log_softmax(z, axis=1)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(features, y)
    ours, theirs = dc.predict_proba(z), reference.predict_proba(features)
    # adding one constant to every entry of W changes no probability, so the optimum is flat
    # in that direction and solvers stop at slightly different points: close, ours no worse
    np.testing.assert_allclose(ours, theirs, atol=5e-5)
    rows = np.arange(len(y))
    assert -np.log(ours[rows, y]).mean() <= -np.log(theirs[rows, y]).mean() + 1e-9


def test_odir_penalty_matches_a_naive_fit_and_shrinks_off_diagonals():
    z, y = _data(n=800, seed=3)
    weights = np.random.default_rng(4).uniform(0.2, 2.0, size=len(y))
    ms = MatrixScaling(reg_lambda=0.5, reg_mu=0.1).fit(z, y, sample_weight=weights)
    scale, bias = _naive(z, y, diagonal=False, reg_lambda=0.5, reg_mu=0.1, weights=weights)
    np.testing.assert_allclose(ms.coef_.numpy(), scale, atol=1e-4)
    np.testing.assert_allclose(ms.intercept_.numpy(), bias, atol=1e-4)
    free = MatrixScaling().fit(z, y, sample_weight=weights)
    off = ~np.eye(4, dtype=bool)
    assert np.abs(ms.coef_.numpy()[off]).mean() < np.abs(free.coef_.numpy()[off]).mean()
    # reg_mu=None uses reg_lambda for the intercept
    same = MatrixScaling(reg_lambda=0.5, reg_mu=0.5).fit(z, y)
    default = MatrixScaling(reg_lambda=0.5).fit(z, y)
    torch.testing.assert_close(default.intercept_, same.intercept_)


def test_tensors_in_tensors_out_and_binary_decision_values():
    z, y = _data(n=500, k=2, seed=5)
    logits = torch.tensor(z, dtype=torch.float32)
    proba = VectorScaling().fit(logits, torch.tensor(y)).predict_proba(logits)
    assert isinstance(proba, torch.Tensor)
    assert proba.dtype == torch.float32
    decision = z[:, 1] - z[:, 0]
    ms = MatrixScaling().fit(decision, y)
    assert ms.predict_proba(decision).shape == (500, 2)


def test_max_iter_too_small_warns():
    from distcal.exceptions import ConvergenceWarning

    z, y = _data(n=300, seed=6)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        ms = MatrixScaling(max_iter=2).fit(z, y)
    assert not ms.converged_


def _objective(calibrator, features, y, weights):
    """The weighted mean NLL (plus penalties) a linear calibrator minimises, as a function of
    its flattened parameters: the quantity whose gradient its stopping rule bounds."""
    features = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(y)
    w = torch.as_tensor(weights, dtype=torch.float64) / float(np.sum(weights))
    k = features.shape[1]
    diagonal = isinstance(calibrator, VectorScaling)
    reg_lambda, reg_mu = calibrator._penalties()
    off = ~torch.eye(k, dtype=torch.bool)

    def loss(theta):
        scale = theta[:k] if diagonal else theta[: k * k].reshape(k, k)
        bias = theta[-k:]
        scores = features * scale + bias if diagonal else features @ scale.T + bias
        value = -(torch.log_softmax(scores, dim=1)[torch.arange(len(y)), y] * w).sum()
        if not diagonal:
            value = value + reg_lambda * (scale[off] ** 2).mean()
        return value + reg_mu * (bias**2).mean()

    return loss


@pytest.mark.parametrize("calibrator", [VectorScaling(), MatrixScaling(), DirichletCalibration()])
def test_integer_weights_equal_repeated_rows(calibrator):
    """Weights equal repetitions up to where each fit stopped, a distance derived from the fits.

    Both fits minimise the same function; each stops with some gradient g left (its stopping
    rule bounds it, but the rule also stops on small steps). Near the optimum the function is
    quadratic with Hessian H, so each fit lies within |g| / lambda_min(H) of the optimum, and
    the probabilities within |J| times that, J their Jacobian in the parameters. The bound is
    measured on this machine's fits, so it holds on any CPU, whatever its reduction order.
    """
    z, y = _data(n=400, seed=7)
    counts = np.random.default_rng(8).integers(0, 3, size=len(y))
    weighted = clone(calibrator).fit(z, y, sample_weight=counts)
    repeated = clone(calibrator).fit(np.repeat(z, counts, axis=0), np.repeat(y, counts))
    features = weighted._features(torch.as_tensor(z, dtype=torch.float64))
    loss = _objective(weighted, features, y, counts)

    def flat(fitted):
        return torch.cat([fitted.coef_.reshape(-1), fitted.intercept_]).to(torch.float64)

    theta_w, theta_r = flat(weighted), flat(repeated)
    # Directions that leave every probability unchanged (a constant added to all biases, or to
    # every row of W) are flat: the Hessian is singular there and the fits may differ along
    # them freely. Work in the Hessian's range, the directions the data determine.
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.func.hessian(loss)(theta_w))
    kept = eigenvalues > 1e-9 * eigenvalues[-1]
    assert int((~kept).sum()) <= theta_w.numel() // 2  # a few symmetric directions, no more
    basis = eigenvectors[:, kept]
    gradients = [basis.T @ torch.func.grad(loss)(theta) for theta in (theta_w, theta_r)]
    distance = sum(g.norm().item() for g in gradients) / eigenvalues[kept][0].item()
    assert (basis.T @ (theta_w - theta_r)).norm().item() <= 2 * distance + 1e-12

    def proba(theta):
        k = z.shape[1]
        diagonal = isinstance(weighted, VectorScaling)
        scale = theta[:k] if diagonal else theta[: k * k].reshape(k, k)
        scores = features * scale + theta[-k:] if diagonal else features @ scale.T + theta[-k:]
        return torch.softmax(scores, dim=1)

    jacobian = torch.func.jacrev(proba)(theta_w).reshape(-1, theta_w.numel())
    bound = 2 * torch.linalg.matrix_norm(jacobian, ord=2).item() * distance + 1e-12
    difference = np.abs(weighted.predict_proba(z) - repeated.predict_proba(z)).max()
    assert difference <= bound, (difference, bound)


@pytest.mark.parametrize("calibrator", [VectorScaling(), MatrixScaling(), DirichletCalibration()])
def test_classes_without_samples_keep_the_identity_and_the_rest_is_fitted_among_themselves(
    calibrator,
):
    """An absent class has no finite optimum; fitting it ran L-BFGS for minutes (K = 20,000,
    N = 300). The present classes are fitted among themselves, the absent ones pass through."""

    z, y = _data(n=600, k=6, seed=9)
    present = y < 4  # classes 4 and 5 never occur
    z, y = z[present], y[present]
    with pytest.warns(UncalibratableDataWarning, match=r"2 of the 6 classes .*\(4, 5\)"):
        fitted = clone(calibrator).fit(z, y)
    sub = clone(calibrator).fit(
        log_softmax(z, axis=1)[:, :4] if isinstance(calibrator, DirichletCalibration)
        else z[:, :4], y
    )  # fmt: skip
    scale, bias = fitted.coef_.numpy(), fitted.intercept_.numpy()
    if isinstance(calibrator, VectorScaling):
        np.testing.assert_array_equal(scale[4:], 1.0)
        np.testing.assert_allclose(scale[:4], sub.coef_.numpy(), rtol=1e-6)
    else:
        np.testing.assert_array_equal(scale[4:], np.eye(6)[4:])
        np.testing.assert_array_equal(scale[:4, 4:], 0.0)
    np.testing.assert_array_equal(bias[4:], 0.0)
    # the absent classes' logits pass through: their calibrated logit is the network's
    decision = fitted.decision_function(z)
    features = log_softmax(z, axis=1) if isinstance(calibrator, DirichletCalibration) else z
    np.testing.assert_allclose(decision[:, 4:], features[:, 4:], rtol=1e-12, atol=1e-12)


def test_twenty_thousand_classes_and_three_hundred_samples_fit_in_bounded_time():
    """Not a timing test: the fit is bounded by the classes that occur (at most 300 here), which
    the number of L-BFGS iterations shows."""
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(300, 20_000)), rng.integers(0, 100, size=300)
    with pytest.warns(UncalibratableDataWarning):
        vs = VectorScaling().fit(z, y)
    assert vs.n_iter_ < 200
    assert vs.coef_.shape == (20_000,)
