"""Optimizer and learning-rate schedule of a run: the original's optimizers and tflearn's exponential decay, or
cosine / one-cycle with warmup."""

from __future__ import annotations

import warnings
from typing import Any

from parameters import Config


def make_schedule(config: Config, steps_per_epoch: int):
    """Learning-rate schedule: tflearn's continuous exponential decay, cosine or one-cycle (both with warmup)."""
    import keras

    hp = config.hyperparams
    total = max(1, config.training.epochs * steps_per_epoch)
    warmup = int(round(hp.warmup_epochs * steps_per_epoch))
    if hp.schedule == "exponential":
        if warmup:
            warnings.warn("warmup_epochs applies to the cosine and onecycle schedules only; ignored", stacklevel=2)
        # lr * decay_rate ** (step / decay_step): tflearn's Momentum(lr_decay, decay_step, staircase=False).
        return keras.optimizers.schedules.ExponentialDecay(
            hp.learning_rate, decay_steps=hp.decay_step, decay_rate=hp.learning_rate_decay, staircase=False
        )
    if hp.schedule == "cosine":
        warmup = min(warmup, total - 1)
        if warmup == 0:
            return keras.optimizers.schedules.CosineDecay(hp.learning_rate, decay_steps=total)
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=hp.learning_rate, warmup_steps=warmup
        )
    # onecycle (Smith 2018, cosine annealing form): linear ramp from lr/25 to lr over max(warmup, 30 %) of the
    # steps, then cosine down to lr/1e4.
    warmup = min(max(warmup, int(0.3 * total)), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        hp.learning_rate / 25.0,
        decay_steps=max(1, total - warmup),
        alpha=1e-4,
        warmup_target=hp.learning_rate,
        warmup_steps=warmup,
    )


def make_optimizer(config: Config, steps_per_epoch: int):
    """The original's optimizers: momentum (SGD), adam (beta_1), rmsprop (rho), adagrad, adadelta (rho)."""
    import keras

    hp = config.hyperparams
    lr = make_schedule(config, steps_per_epoch)
    common: dict[str, Any] = {"learning_rate": lr}
    if hp.weight_decay > 0:
        common["weight_decay"] = hp.weight_decay  # decoupled (AdamW-style) decay
    if hp.global_clipnorm > 0:
        common["global_clipnorm"] = hp.global_clipnorm
    p = hp.optimizer_param
    optimizer = {
        "momentum": lambda: keras.optimizers.SGD(momentum=p, **common),
        "adam": lambda: keras.optimizers.Adam(beta_1=p, **common),
        "rmsprop": lambda: keras.optimizers.RMSprop(rho=p, **common),
        "adagrad": lambda: keras.optimizers.Adagrad(**common),
        "adadelta": lambda: keras.optimizers.Adadelta(rho=p, **common),
    }[hp.optimizer]()
    if hp.weight_decay > 0:  # no decay on biases and batch-norm scales/offsets
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
