"""The training application built on the library: tasks, models as values, the optimisation
step and host loop, the 1997 protocol, run folders with checkpoints, plots, and the CLI
(``attnrnn train``). It uses optax, orbax-checkpoint, tqdm and matplotlib, the ``train`` extra
(``pip install 'attnrnn[train]'``); the library (``attnrnn``) imports none of it.

One concept per module: [`task`][attnrnn.train.task] (the task value, its batches),
[`tasks`][attnrnn.train.tasks] (generators, tasks by name),
[`data`][attnrnn.train.data] (tasks made from arrays, ``.npz`` files, MNIST-1D),
[`cells`][attnrnn.train.cells] (the cells, one entry each: options, model string, init, run),
[`model_spec`][attnrnn.train.model_spec] (model strings), [`models`][attnrnn.train.models]
(models as values), [`losses`][attnrnn.train.losses],
[`config`][attnrnn.train.config] (what defines a run; the defaults table),
[`step`][attnrnn.train.step] (optimizer, one update, chunks on device),
[`sharding`][attnrnn.train.sharding], [`evaluation`][attnrnn.train.evaluation],
[`loop`][attnrnn.train.loop] (``fit``, ``fit_trials``, the summary),
[`protocol`][attnrnn.train.protocol] (held-out, train/test, the 1997 rule: one value each),
[`checkpoints`][attnrnn.train.checkpoints] and [`run`][attnrnn.train.run] (run folders, resume),
[`plots`][attnrnn.train.plots], [`debug_loss`][attnrnn.train.debug_loss],
[`cli`][attnrnn.train.cli].
"""

from attnrnn.train import _extra  # noqa: F401  (first: names a missing `train` extra)
from attnrnn.train.build import Run, build_run
from attnrnn.train.config import DEFAULTS, NO_CLIP, TrainConfig, training_defaults
from attnrnn.train.data import DataError, array_task, load_npz
from attnrnn.train.evaluation import confusion, evaluate, heldout_set, predict, solved
from attnrnn.train.loop import RunOptions, fit, fit_trials, new_train_state, summarize
from attnrnn.train.losses import batch_loss
from attnrnn.train.model_spec import BOUNDED, RAW, ModelSpec, parse_model
from attnrnn.train.models import FunctionModel, Model, make_model, model_for
from attnrnn.train.sharding import data_parallel_mesh, replicate, shard_batch
from attnrnn.train.step import (TrainState, consecutive_skips, guard_non_finite,
                                init_train_state, make_optimizer, make_train_chunk,
                                make_train_step, skipped_updates)
from attnrnn.train.protocol import Protocol, make_protocol
from attnrnn.train.task import Task, next_batch
from attnrnn.train.tasks import make_task

__all__ = [
    "BOUNDED", "DEFAULTS", "NO_CLIP", "RAW", "DataError", "FunctionModel", "Model", "ModelSpec",
    "Protocol", "Run", "RunOptions", "Task", "TrainConfig", "TrainState", "array_task",
    "batch_loss", "build_run", "confusion", "consecutive_skips", "data_parallel_mesh", "evaluate",
    "fit", "fit_trials", "guard_non_finite", "heldout_set", "init_train_state", "load_npz",
    "make_model", "make_optimizer", "make_protocol", "make_task", "make_train_chunk",
    "make_train_step", "model_for", "new_train_state", "next_batch", "parse_model", "predict",
    "replicate", "shard_batch", "skipped_updates", "solved", "summarize",
    "training_defaults",
]
