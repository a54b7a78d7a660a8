"""The one L-BFGS set-up of distcal's iterative calibrators, and its stopping rule.

Every L-BFGS fit in calibration (the affine calibrators of ``_linear.py``, the mixture weights
of ``_ensemble.py``) runs through :func:`minimize_lbfgs`, so they stop by the same rule:

- L-BFGS (``torch.optim.LBFGS``, unit step, strong Wolfe line search, the last 20 steps kept)
  stops when the largest entry of the gradient is at most ``tol``, or when a step changes the
  loss, or every parameter, by less than ``tol / 1000``;
- it is stopped at ``max_iter`` iterations or ``max_iter * 5 // 4`` loss evaluations;
- the fit has *converged* when it stopped on the first rule, not at a cap;
- a loss or parameters that become NaN or infinite stop the fit with a ``ValueError`` naming
  the calibrator and the evaluation: no fit reports convergence on a non-finite objective.

(The temperature of ``_temperature.py`` is not fitted by L-BFGS but by an exact bracketed
Halley iteration with its own tolerance on ``log(T)``.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = ["LBFGSResult", "minimize_lbfgs"]

#: Steps of curvature history L-BFGS keeps.
HISTORY_SIZE = 20
#: ``tolerance_change`` is ``tol`` times this.
CHANGE_FACTOR = 1e-3


@dataclass
class LBFGSResult:
    """What :func:`minimize_lbfgs` reports besides the parameters it updated in place."""

    n_iter: int
    converged: bool


def minimize_lbfgs(
    parameters: Sequence[torch.Tensor],
    closure: Callable[[], torch.Tensor],
    *,
    tol: float,
    max_iter: int,
    owner: str = "L-BFGS",
) -> LBFGSResult:
    """Minimise ``closure()`` over ``parameters`` (updated in place) by the rule of the module.

    ``closure`` returns the loss and leaves its gradient in each parameter's ``.grad`` (by
    autograd or in closed form). ``owner`` names the fit in errors.
    """
    evaluations_seen = [0]

    def checked_closure():
        loss = closure()
        evaluations_seen[0] += 1
        gradients_finite = all(
            p.grad is None or bool(torch.isfinite(p.grad).all()) for p in parameters
        )
        if not (torch.isfinite(loss) and gradients_finite):
            raise ValueError(
                f"{owner}: the loss ({float(loss):.6g}) or its gradient became NaN or infinite "
                f"at evaluation {evaluations_seen[0]} of L-BFGS; the fit is stopped rather than "
                "reported converged. The logits are finite (checked on input), so the affine "
                "map overflowed: rescale the logits, or increase the regularisation."
            )
        return loss

    max_eval = max_iter * 5 // 4
    optimizer = torch.optim.LBFGS(
        list(parameters),
        lr=1.0,
        max_iter=max_iter,
        max_eval=max_eval,
        tolerance_grad=tol,
        tolerance_change=tol * CHANGE_FACTOR,
        history_size=HISTORY_SIZE,
        line_search_fn="strong_wolfe",
    )
    optimizer.step(checked_closure)
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    n_iter, evaluations = int(state.get("n_iter", 0)), int(state.get("func_evals", 0))
    if not all(bool(torch.isfinite(p).all()) for p in parameters):
        raise ValueError(
            f"{owner}: the parameters became NaN or infinite after {n_iter} L-BFGS iterations; "
            "the fit is stopped rather than reported converged."
        )
    return LBFGSResult(n_iter, n_iter < max_iter and evaluations < max_eval)
