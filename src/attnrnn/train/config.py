"""What defines a run ([`TrainConfig`][attnrnn.train.config.TrainConfig]) and the training
settings each model gets by default: the one source of defaults, which the CLI's flags and
``--help`` read."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from attnrnn.train.data import file_sha256, load_npz
from attnrnn.train.evaluation import HELDOUT_SIZE
from attnrnn.train.models import BOUNDED, Model, ModelSpec, model_for, parse_model
from attnrnn.train.protocol import PROTOCOLS, protocol_name, stop_rule
from attnrnn.train.step import OPTIMIZERS
from attnrnn.train.tasks import check_batch_size, make_task

__all__ = ["TrainConfig", "training_defaults", "TRAINING_DEFAULTS", "PROTOCOLS"]

# What a model trains with unless the config says otherwise: adam at lr 1e-2 with
# clip_by_global_norm(1.0), batch 32, 20 steps per device call (docs/results.md chose these);
# the 1997 LSTM the paper's online SGD (batch 1, lr 0.5, no clipping), 500 steps a call, and
# its fixed network of 4 cells (2 blocks of 2: ``hidden`` records it, it cannot change it).
TRAINING_DEFAULTS = {"optimizer": "adam", "lr": 1e-2, "clip": 1.0, "batch": 32,
                     "eval_every": 20, "steps": 600, "hidden": 32, "layers": 1,
                     "bidirectional": False, "readout": "last", "position": False}
MODEL_TRAINING_DEFAULTS = {
    "lstm1997": {"optimizer": "sgd", "lr": 0.5, "clip": None, "batch": 1, "eval_every": 500,
                 "steps": 200_000, "hidden": 4},
}
# A benchmark's own protocol comes before a model's: MNIST-1D's training script (Greydanus
# 2020, notebooks/train.py) runs Adam at 1e-2, batches of 100 in order, 6,000 steps, no clip.
_MNIST1D = {"optimizer": "adam", "lr": 1e-2, "clip": None, "batch": 100, "eval_every": 100,
            "steps": 6000}
TASK_TRAINING_DEFAULTS = {"mnist1d": _MNIST1D, "mnist1d,shuffle": _MNIST1D}
# Each model's best configuration found on MNIST-1D within the benchmark's size (at most the
# 5,210 weights of its ConvBase; experiments/mnist1d has the runs that chose them), by the
# model's name without options (``attention:2``), else its cell.
_STACK = {"layers": 2, "bidirectional": True}
_MNIST1D_MODELS = {
    "conv": {"hidden": 25},
    "gated": {"hidden": 16, **_STACK},
    "gru": {"hidden": 12, **_STACK},
    "lstm": {"hidden": 12, **_STACK},
    "attention:2": {"hidden": 5, **_STACK, "readout": "all"},
    "attention:inf": {"hidden": 12, **_STACK, "position": True},
    "attention": {"hidden": 5, **_STACK, "readout": "all"},
}
TASK_MODEL_DEFAULTS = {"mnist1d": _MNIST1D_MODELS, "mnist1d,shuffle": _MNIST1D_MODELS}
# ... and the model options of that configuration, taken when the model is named without any
# (AttentionRNN(∞) reads its past states normalised there: `attention:inf,norm`).
_MNIST1D_OPTIONS = {"attention:inf": "norm"}
TASK_MODEL_OPTIONS = {"mnist1d": _MNIST1D_OPTIONS, "mnist1d,shuffle": _MNIST1D_OPTIONS}


def training_defaults(model, task=None) -> dict:
    """The steps, optimizer, lr, clip, batch, eval_every, and the hidden size, layers,
    directions and readout a model (a ``ModelSpec`` or its string) trains with by default on
    ``task`` (a task name): a benchmark's protocol overrides the model's, and its best
    configuration for the model overrides both."""
    spec = parse_model(model)
    recipes = TASK_MODEL_DEFAULTS.get(task, {})
    name = str(spec._replace(options=BOUNDED)).split(",")[0]  # e.g. attention:2
    return {**TRAINING_DEFAULTS, **MODEL_TRAINING_DEFAULTS.get(spec.cell, {}),
            **TASK_TRAINING_DEFAULTS.get(task, {}),
            **recipes.get(name, recipes.get(spec.cell, {}))}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; ``summary.json`` records it whole.

    ``model`` is the CLI form (``"gated"``, ``"attention:inf,raw"``, …), parsed once here
    (``spec``); the training code receives the built [`Model`][attnrnn.train.models.Model]
    (``build_model``). ``steps``, ``optimizer``, ``lr``, ``clip``, ``batch``, ``eval_every``
    and the architecture — ``hidden``, ``layers``, ``bidirectional``, ``readout``,
    ``position`` (see [`make_model`][attnrnn.train.models.make_model]) — left as
    ``"default"`` take the model's on the task
    ([`training_defaults`][attnrnn.train.config.training_defaults]); the config then records
    the values used. A model named without options takes the task's options for it too (on
    MNIST-1D ``attention:inf`` is ``attention:inf,norm``). ``clip=None`` means no clipping.
    ``length`` is the adding problem's ``T`` (the other tasks' default lengths when None).

    ``protocol="heldout"``: steps run on device in chunks of ``eval_every``, with a held-out
    evaluation after each and after the last step (exactly ``steps`` steps run: the last
    chunk is shorter when ``eval_every`` does not divide ``steps``); a run is *solved* when
    the held-out set has at most one error per 2,560 sequences.
    ``protocol="1997"``: the paper's ST3/ABS stopping rule on the training sequences
    ([`attnrnn.train.protocol`][attnrnn.train.protocol]), checked after every step; ``steps`` is
    the budget, and the stopped weights are tested on a fresh set.
    ``protocol="test"``: like ``heldout``, on the task's own test split (a task made from
    arrays). ``protocol=None`` (the default) is the task's own: ``test`` where it has a test
    split, ``heldout`` otherwise ([`attnrnn.train.protocol`][attnrnn.train.protocol]).

    ``data``: an ``.npz`` file to train on
    ([`load_npz`][attnrnn.train.data.load_npz]); ``task`` is then the file's name, and
    ``data_sha256`` its hash (computed when left out; a config rebuilt from ``config.json``
    refuses a file that has changed since).
    """

    task: str = "temporal-order"
    level: str = "moderate"
    model: str = "gated"
    hidden: int | str = "default"
    steps: int | str = "default"
    batch: int | str = "default"
    optimizer: str = "default"
    lr: float | str = "default"
    clip: float | None | str = "default"
    seed: int = 0
    eval_every: int | str = "default"
    heldout: int = HELDOUT_SIZE
    max_skips: int = 100
    protocol: str | None = None
    length: int | None = None
    data: str | None = None
    data_sha256: str | None = None
    layers: int | str = "default"
    bidirectional: bool | str = "default"
    readout: str = "default"
    position: bool | str = "default"

    def __post_init__(self):
        model = str(parse_model(self.model))
        options = TASK_MODEL_OPTIONS.get(self.task, {}).get(model)
        object.__setattr__(self, "model", f"{model},{options}" if options else model)
        if self.data is not None:
            data = Path(self.data).absolute()
            object.__setattr__(self, "data", str(data))
            object.__setattr__(self, "task", data.name)
            if self.data_sha256 is None and data.is_file():
                object.__setattr__(self, "data_sha256", file_sha256(data))
        for name, value in training_defaults(self.spec, self.task).items():
            if getattr(self, name) == "default":
                object.__setattr__(self, name, value)
        for name in ("hidden", "steps", "batch", "eval_every", "heldout", "max_skips", "layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.clip is not None and not (isinstance(self.clip, (int, float)) and self.clip > 0):
            raise ValueError(f"clip must be a positive number, or None for no clipping (--clip "
                             f"none), got {self.clip!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        for name in ("bidirectional", "position"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        task = self.make_task()
        check_batch_size(task, self.batch)
        self.build_model(task)  # the architecture fits the task
        if self.protocol == "1997":
            rule = stop_rule(task.name)
            if self.batch > rule.window:
                raise ValueError(f"batch must be at most the 1997 rule's window of "
                                 f"{rule.window} sequences, got {self.batch}")
        protocol_name(task, self.protocol)  # the task has what the protocol needs

    @property
    def spec(self) -> ModelSpec:
        """``model`` parsed ([`parse_model`][attnrnn.train.models.parse_model] caches by
        string)."""
        return parse_model(self.model)

    def make_task(self):
        if self.data is not None:
            return load_npz(self.data, sha256=self.data_sha256)
        return make_task(self.task, level=self.level, length=self.length)

    def build_model(self, task=None) -> Model:
        """The model this config trains, sized for ``task`` (default ``make_task``)."""
        return model_for(self.spec, task or self.make_task(), self.hidden, layers=self.layers,
                         bidirectional=self.bidirectional, readout=self.readout,
                         position=self.position)

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` (re-validated)."""
        return dataclasses.replace(self, **changes)
