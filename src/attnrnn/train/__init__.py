"""The training application built on the library: tasks, models as values, the optimisation
step and host loop, the 1997 protocol, run folders with checkpoints, plots, and the CLI
(``attnrnn train``). It uses optax, orbax-checkpoint, tqdm and matplotlib; the library
(``attnrnn``) imports none of it.

One concept per module: :mod:`~attnrnn.train.tasks`, :mod:`~attnrnn.train.models`,
:mod:`~attnrnn.train.config` (what defines a run; the defaults), :mod:`~attnrnn.train.step`
(optimizer, one update, chunks on device), :mod:`~attnrnn.train.sharding`,
:mod:`~attnrnn.train.evaluation`, :mod:`~attnrnn.train.loop` (``fit``, ``fit_trials``, the
summary), :mod:`~attnrnn.train.protocol` (the 1997 stopping rule and test),
:mod:`~attnrnn.train.checkpoints` and :mod:`~attnrnn.train.run` (run folders, resume),
:mod:`~attnrnn.train.plots`, :mod:`~attnrnn.train.debug_loss`, :mod:`~attnrnn.train.cli`.
"""

from attnrnn.train.config import TrainConfig, training_defaults
from attnrnn.train.evaluation import evaluate, heldout_set, solved
from attnrnn.train.loop import fit, fit_trials, new_train_state, summarize
from attnrnn.train.models import (BOUNDED, RAW, Model, ModelSpec, make_model, model_for,
                                  parse_model)
from attnrnn.train.sharding import data_parallel_mesh, replicate, shard_batch
from attnrnn.train.step import (TrainState, consecutive_skips, guard_non_finite,
                                init_train_state, make_optimizer, make_train_chunk,
                                make_train_step, skipped_updates)
from attnrnn.train.tasks import Task, make_task

__all__ = [
    "BOUNDED", "RAW", "Model", "ModelSpec", "Task", "TrainConfig", "TrainState",
    "consecutive_skips", "data_parallel_mesh", "evaluate", "fit", "fit_trials",
    "guard_non_finite", "heldout_set", "init_train_state", "make_model", "make_optimizer",
    "make_task", "make_train_chunk", "make_train_step", "model_for", "new_train_state",
    "parse_model", "replicate", "shard_batch", "skipped_updates", "solved", "summarize",
    "training_defaults",
]
