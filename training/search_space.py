"""The search space of the hyperparameter search: what is searched, and how a point of the space names its trial.

``build_space`` turns a ``parameters.OptimizerSearchSpace`` into a hyperopt space: ``hp.uniform`` for the four
ranges, ``hp.choice`` over the optimizers, plus the constant part (``FIXED_KEY``) that every trial shares.

    >>> space = build_space(OptimizerSearchSpace(optimizer=("momentum", "adam")))
    >>> sorted(k for k in space if k != FIXED_KEY)
    ['keep_prob', 'learning_rate', 'learning_rate_decay', 'optimizer', 'optimizer_param']
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from errors import UserError
from parameters import OptimizerSearchSpace

# The searched names, in report order; each is a Hyperparams field and a field of OptimizerSearchSpace.
SEARCHED: tuple[str, ...] = ("learning_rate", "learning_rate_decay", "optimizer", "optimizer_param", "keep_prob")
# Key of the constant part of the space: where and how to train, identical for every trial. It travels inside the
# space so that the module-level objective needs nothing but its argument (Spark executors, Mongo workers).
FIXED_KEY = "fixed"


class SearchError(UserError, ValueError):
    """A search that cannot start: bad space, mismatching trials file, bad back-end settings."""


def build_space(search: OptimizerSearchSpace, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """hyperopt space: ``hp.uniform`` for the four ranges, ``hp.choice`` over the optimizers.

    ``fixed`` (data_dir, trials_dir, overrides) is carried unchanged to the objective under ``FIXED_KEY``.
    Raises SearchError naming the bad range or optimizer (from ``OptimizerSearchSpace.validate``).
    """
    from hyperopt import hp

    try:
        search.validate()
    except (ValueError, TypeError) as err:
        raise SearchError(str(err)) from None
    space: dict[str, Any] = {name: hp.uniform(name, *getattr(search, name)) for name in SEARCHED if name != "optimizer"}
    space["optimizer"] = hp.choice("optimizer", list(search.optimizer))
    space[FIXED_KEY] = dict(fixed or {})
    return space


def trial_name(params: dict[str, Any], overrides: dict[str, Any] | None = None, data_dir: str = "") -> str:
    """Folder name of a trial: a digest of everything that sets its training (same digest -> same config)."""
    text = json.dumps([params, overrides or {}, str(data_dir)], sort_keys=True, default=str)
    return "trial-" + hashlib.sha1(text.encode()).hexdigest()[:12]
