"""The extension recipe: a new distillation method is one file plus its tests.

This file is the whole of a small real method, "feature moment matching": one randomly
initialised network, drawn once in ``setup`` from the method's own random stream, embeds the
real and the synthetic images of every class; the loss matches the per-class means of the
embeddings and, weighted by ``std_weight``, their per-class standard deviations. Nothing else in
distcal changes: the method declares its options and their constraints, registers itself, and
MDTTrainer runs it with augmentation, the MDT mask, callbacks and checkpoints.
"""

import numbers

import pytest
import torch

from distcal._params import Interval
from distcal.distill import (
    METHODS,
    DistillationMethod,
    MDTTrainer,
    load_digits,
    register_method,
)
from distcal.exceptions import InvalidParameterError


class FeatureMoments(DistillationMethod):
    """Match per-class means and standard deviations of a fixed random network's embeddings.

    Parameters
    ----------
    options : dict or None, default=None
        batch_real : int, default=64
            Real images per class per iteration.
        std_weight : float, default=1.0
            Weight of the standard-deviation term (0 matches the means only).
    """

    name = "feature-moments"
    defaults = {"batch_real": 64, "std_weight": 1.0}
    _parameter_constraints = {
        "batch_real": [Interval(numbers.Integral, 2, None, closed="left")],
        "std_weight": [Interval(numbers.Real, 0, None, closed="left")],
    }
    default_lr_img = 0.1
    default_augment = False

    def setup(self, real, context):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=context.generator(0x464D)))
        self.network = context.build_network(seed)
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)

    def step(self, ctx):
        loss = ctx.images.new_zeros(())
        for c in range(ctx.n_classes):
            real = ctx.real.sample_class(c, self.options["batch_real"], ctx.generator)
            syn = ctx.images[c * ctx.ipc : (c + 1) * ctx.ipc]
            real, syn = ctx.siamese(real, syn)
            real = ctx.mask(real, "real", ctx.generator)
            syn = ctx.mask(syn, "synthetic", ctx.generator)
            with torch.no_grad():
                f_real = self.network.embed(real)
            f_syn = self.network.embed(syn)
            loss = loss + (f_real.mean(0) - f_syn.mean(0)).square().sum()
            if self.options["std_weight"] > 0:
                spread = (f_real.std(0) - f_syn.std(0)).square().sum()
                loss = loss + self.options["std_weight"] * spread
        ctx.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ctx.optimizer.step()
        return {"loss": float(loss.detach())}


@pytest.fixture
def registered():
    register_method(FeatureMoments)  # in a library module: @register_method on the class
    yield FeatureMoments
    del METHODS[FeatureMoments.name]


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.images[:400], data.labels[:400]


def trainer(**kwargs):
    params = {
        "method": "feature-moments",
        "ipc": 3,
        "width": 8,
        "depth": 2,
        "iterations": 40,
        "random_state": 0,
        "method_params": {"batch_real": 32},
    }
    return MDTTrainer(**{**params, **kwargs})


def test_a_new_method_distils_through_the_trainer(registered, digits):
    X, y = digits
    fitted = trainer().fit(X, y)
    assert fitted.images_.shape == (30, 1, 8, 8)
    assert torch.isfinite(fitted.images_).all()
    losses = [record["loss"] for record in fitted.history_]
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    # The trainer's machinery works for it unchanged: same seed, same images; the mask and
    # siamese augmentation reach its objective.
    again = trainer().fit(X, y)
    assert torch.equal(again.images_, fitted.images_)
    masked = trainer(mask_ratio=0.5, augment="color_crop_cutout_scale_rotate").fit(X, y)
    assert not torch.equal(masked.images_, fitted.images_)


def test_a_new_method_gets_the_shared_option_checks(registered, digits):
    X, y = digits
    with pytest.raises(
        InvalidParameterError,
        match=r"The 'std_weight' option of FeatureMoments must be a float in the range "
        r"\[0, inf\)\. Got -1\.0 instead\.",
    ):
        trainer(method_params={"std_weight": -1.0}).fit(X, y)
    with pytest.raises(InvalidParameterError, match=r"Unknown option\(s\) \['lr_net'\]"):
        trainer(method_params={"lr_net": 0.1}).fit(X, y)
    assert FeatureMoments({"std_weight": 0}).options == {"batch_real": 64, "std_weight": 0}
