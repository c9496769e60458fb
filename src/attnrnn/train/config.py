"""What defines a run ([`TrainConfig`][attnrnn.train.config.TrainConfig]) and the one table of
the settings each model trains with by default
([`DEFAULTS`][attnrnn.train.config.DEFAULTS]), which the CLI's flags and ``--help`` read."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

from attnrnn.train.data import file_sha256, load_npz
from attnrnn.train.evaluation import HELDOUT_SIZE
from attnrnn.train.model_spec import ModelSpec, parse_model
from attnrnn.train.models import Model, model_for
from attnrnn.train.protocol import PROTOCOLS
from attnrnn.train.step import NO_CLIP, check_optimizer, make_optimizer
from attnrnn.train.tasks import TASK_NAMES, make_task

__all__ = ["DEFAULTS", "NO_CLIP", "PROTOCOLS", "TrainConfig", "training_defaults"]

# A config's ``clip=None`` is its default's; ``NO_CLIP`` (``"none"``, from step) no clipping.

_STACK = {"layers": 2, "bidirectional": True}

# ``attention:inf``'s options when it is named without any (the DEFAULTS row below); the
# run's hidden size fills ``{hidden}``: one head per state channel.
ATTENTION_INF = "raw,nonexp,v=2,scale=0.35,cap=5,heads={hidden},recency=log/0.003/5,bias"
# ... and on MNIST-1D (experiments/mnist1d/LOG.md chose it).
ATTENTION_INF_MNIST1D = "raw,nonexp,v=2,cap=5,heads=8,recency=0/0.01/0.03/0.1/0.2/0.3/0.6/1"

# Every default, in one table: ``(task, model, settings)``. A row applies to a run when its
# task matches (None: any task; ``mnist1d`` is also ``mnist1d,shuffle``) and its model does
# (None: any; a cell such as ``attention``, or a model's name without options such as
# ``attention:inf``); later rows override earlier ones. ``options`` are the model options a
# model named without any takes on that task.
DEFAULTS = (
    # adam at lr 1e-2 with clip_by_global_norm(1.0), batch 32, 20 steps per device call
    # (docs/results.md chose these)
    (None, None, {"optimizer": "adam", "lr": 1e-2, "clip": 1.0, "batch": 32, "eval_every": 20,
                  "steps": 600, "hidden": 32, "layers": 1, "bidirectional": False,
                  "readout": "last", "position": False}),
    # AttentionRNN(∞) that knows when a state was made: one head per state channel, each its
    # own softmax over every past state with its own recency (one never forgets, the others
    # forget at rates log-spaced from 0.003 to 5 per step of age), bounded values (nonexp,
    # v=2), scores scaled by 0.35 then soft-capped at 5, reading [x, 1]
    # (experiments/realdata chose it)
    (None, "attention:inf", {"options": ATTENTION_INF}),
    # the paper's online SGD, and its fixed network of 4 cells (2 blocks of 2: ``hidden``
    # records it, it cannot change it)
    (None, "lstm1997", {"optimizer": "sgd", "lr": 0.5, "clip": NO_CLIP, "batch": 1,
                        "eval_every": 500, "steps": 200_000, "hidden": 4}),
    # MNIST-1D's own training script (Greydanus 2020, notebooks/train.py)
    ("mnist1d", None, {"optimizer": "adam", "lr": 1e-2, "clip": NO_CLIP, "batch": 100,
                       "eval_every": 100, "steps": 6000}),
    # each model's best configuration found on MNIST-1D within the benchmark's size (at most
    # the 5,210 weights of its ConvBase; experiments/mnist1d has the runs that chose them)
    ("mnist1d", "conv", {"hidden": 25}),
    ("mnist1d", "gated", {"hidden": 16, **_STACK}),
    ("mnist1d", "gru", {"hidden": 12, **_STACK}),
    ("mnist1d", "lstm", {"hidden": 12, **_STACK}),
    ("mnist1d", "attention", {"hidden": 5, **_STACK, "readout": "all"}),
    # AttentionRNN(∞) on MNIST-1D: eight heads with slower recencies (its digits' strokes lie
    # far apart in 40 steps), one layer of 32, no position input
    ("mnist1d", "attention:inf", {"hidden": 32, "layers": 1, "bidirectional": False,
                                  "readout": "last", "position": False,
                                  "options": ATTENTION_INF_MNIST1D}),
)


def _rows(spec: ModelSpec, task):
    """The settings of the ``DEFAULTS`` rows that apply, in order."""
    name = str(spec).split(",")[0]  # e.g. attention:2
    family = None if task is None else task.split(",")[0]
    for row_task, row_model, settings in DEFAULTS:
        if row_task in (None, family) and row_model in (None, spec.name, name):
            yield settings


def training_defaults(model, task=None) -> dict:
    """The steps, optimizer, lr, clip, batch, eval_every, and the hidden size, layers,
    directions, readout and position a model (a model string or ``ModelSpec``) trains with by
    default on ``task`` (a task name), and the model ``options`` it takes there when named
    without any (``{hidden}`` in them stands for the run's hidden size): every ``DEFAULTS``
    row that applies, the later over the earlier."""
    settings = {"options": ""}
    for row in _rows(parse_model(model), task):
        settings.update(row)
    return settings


# The fields a config fills from the defaults when left None.
_DEFAULTED = ("hidden", "steps", "batch", "optimizer", "lr", "clip", "eval_every", "layers",
              "bidirectional", "readout", "position")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; ``summary.json`` records it whole (resolved).

    ``model`` is a model string (``"gated"``, ``"attention:inf,raw"``, …;
    [`attnrnn.train.model_spec`][attnrnn.train.model_spec]); the training code receives the
    built [`Model`][attnrnn.train.models.Model] (``build_model``). A field left ``None`` means
    the default of the model on the task: ``steps``, ``optimizer``, ``lr``, ``clip``,
    ``batch``, ``eval_every`` and the architecture — ``hidden``, ``layers``,
    ``bidirectional``, ``readout``, ``position`` (see
    [`make_model`][attnrnn.train.models.make_model]) — from
    [`DEFAULTS`][attnrnn.train.config.DEFAULTS]. [`resolve`][attnrnn.train.config.TrainConfig.resolve]
    fills them (and writes the model string in its canonical form, with the task's options for
    a model named without any: ``attention:inf`` is ``attention:inf,raw,nonexp,v=2,
    scale=0.35,cap=5,heads=32,recency=log/0.003/5,bias`` at hidden size 32 — one head per
    channel of the state, whatever its size — and on MNIST-1D eight heads with slower rates);
    the training functions resolve the config they are given. A config is a value whose fields
    are each checked against their range when it is made (nothing is loaded or built);
    [`build_run`][attnrnn.train.build.build_run] builds its task, model, optimizer and protocol
    once and checks that they fit together. ``clip=NO_CLIP``
    (``"none"``) trains without clipping. ``length`` is the adding problem's ``T`` (the other
    tasks' default lengths when None).

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
    hidden: int | None = None
    steps: int | None = None
    batch: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    clip: float | str | None = None
    seed: int = 0
    eval_every: int | None = None
    heldout: int = HELDOUT_SIZE
    max_skips: int = 100
    protocol: str | None = None
    length: int | None = None
    data: str | None = None
    data_sha256: str | None = None
    layers: int | None = None
    bidirectional: bool | None = None
    readout: str | None = None
    position: bool | None = None

    def __post_init__(self):
        resolved = self._resolved()
        try:
            _check(SimpleNamespace(**{**vars(self), **resolved}))
        except ValueError as error:
            if resolved["model"] == str(parse_model(self.model)):
                raise
            # The options came from DEFAULTS: say so, or the error names options never given.
            raise ValueError(f"{error} ({self.model} named alone is {resolved['model']} here: "
                             "name its options to change them)") from None

    def resolve(self) -> TrainConfig:
        """This config with every ``None`` that has a default filled, the model string
        canonical, and a ``data`` file's path absolute and hashed; a resolved config resolves
        to itself."""
        values = self._resolved()
        if all(getattr(self, name) == value for name, value in values.items()):
            return self
        return dataclasses.replace(self, **values)

    def _resolved(self) -> dict:
        """The fields ``resolve`` sets, and their values."""
        spec = parse_model(self.model)
        values = {"model": str(spec), "task": self.task}
        if self.data is not None:
            data = Path(self.data).absolute()
            values.update(data=str(data), task=data.name)
            if self.data_sha256 is None and data.is_file():
                values["data_sha256"] = file_sha256(data)
        defaults = training_defaults(spec, values["task"])
        given = {name: getattr(self, name) for name in _DEFAULTED}
        values.update({name: defaults[name] if value is None else value
                       for name, value in given.items()})
        if defaults["options"] and "," not in self.model:  # named without options
            options = defaults["options"].format(hidden=values["hidden"])
            values["model"] = str(parse_model(f"{self.model},{options}"))
        return values

    def make_task(self):
        """The task: the ``data`` file's, or the generated ``task``."""
        return _make_task(self)

    def build_model(self, task=None) -> Model:
        """The model this config trains, sized for ``task`` (default ``make_task``)."""
        return _build_model(self.resolve(), task or self.make_task())

    def make_optimizer(self):
        """The optax transformation of ``optimizer``, ``lr`` and ``clip``."""
        config = self.resolve()
        return make_optimizer(config.optimizer, config.lr, config.clip)

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` (checked)."""
        return dataclasses.replace(self, **changes)


def _check(config):
    """A config's resolved fields (on a namespace: the config is being made), each checked
    against its own range; whether the task, model and protocol fit together is
    [`build_run`][attnrnn.train.build.build_run]'s to check (it builds them)."""
    for name in ("hidden", "steps", "batch", "eval_every", "heldout", "max_skips", "layers"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not (isinstance(config.lr, (int, float)) and config.lr > 0 and math.isfinite(config.lr)):
        raise ValueError(f"lr must be a positive number, got {config.lr!r}")
    check_optimizer(config.optimizer, config.clip)
    for name in ("bidirectional", "position"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(config, name)!r}")
    parse_model(config.model).check_hidden(config.hidden)  # e.g. heads that split the state
    if config.data is None and config.task not in TASK_NAMES:
        raise ValueError(f"task must be one of {list(TASK_NAMES)}, got {config.task!r}")
    if config.protocol is not None and config.protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {config.protocol!r}")


def _make_task(config):
    if config.data is not None:
        return load_npz(config.data, sha256=config.data_sha256)
    return make_task(config.task, level=config.level, length=config.length)


def _build_model(config, task) -> Model:
    return model_for(config.model, task, config.hidden, layers=config.layers,
                     bidirectional=config.bidirectional, readout=config.readout,
                     position=config.position)
