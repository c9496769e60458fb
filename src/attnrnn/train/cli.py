"""The ``attnrnn`` command line (also ``python -m attnrnn``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import jax


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


_RUNS = "runs"  # where a run without --out goes: a new folder each time


def _yes_no(text):
    if text.lower() in ("yes", "true", "1"):
        return True
    if text.lower() in ("no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def _clip(text):
    from attnrnn.train.config import NO_CLIP

    if text.lower() in ("none", "off"):
        return NO_CLIP
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number > 0 (the global-norm clip) or 'none', got {text!r}") from None


_clip.__name__ = "clip"  # argparse names a type's failure by it


def _model_default(name):
    """The help text's default of a training setting: every row of the defaults table that
    sets it."""
    from attnrnn.train.config import DEFAULTS

    rows = [(f"{task or ''}{' ' if task and model else ''}{model or ''}", settings[name])
            for task, model, settings in DEFAULTS if name in settings]
    (_, value), *specific = rows
    shown = lambda v: ("yes" if v else "no") if isinstance(v, bool) else v  # noqa: E731
    return f"default {shown(value)}" + "".join(f"; {where} {shown(v)}" for where, v in specific)


def _add_train_options(parser):
    """The flags of ``attnrnn train`` that make its ``TrainConfig``: the task, the model,
    the training settings."""
    from attnrnn.train.config import TrainConfig

    defaults = TrainConfig()

    parser.add_argument("--task", default=None,
                        help="temporal-order, adding, echo, delayed-letters (generated), "
                        "mnist1d or mnist1d,shuffle (MNIST-1D, generated offline by the "
                        f"mnist1d package: pip install 'attnrnn[data]') (default {defaults.task})")
    parser.add_argument("--data", metavar="FILE.npz", default=None,
                        help="train on your own sequences: an .npz with x_train (N, T, n) or "
                        "(N, T), y_train (N,) or (N, T) integer classes, x_test, y_test, and "
                        "optionally boolean mask_train, mask_test (N, T); read without "
                        "pickle; evaluated on its test split")
    parser.add_argument("--level", default=None,
                        help="temporal-order level: easy, normal, moderate, hard, nightmare "
                        f"(default {defaults.level}; temporal-order only)")
    parser.add_argument("--length", type=int, default=None,
                        help="sequence length: the adding problem's minimal length T (default "
                        "100), echo's (64) or delayed-letters' (32); not for temporal-order")
    _add_model_options(parser, defaults)
    _add_training_options(parser, defaults)


def _add_model_options(parser, defaults):
    from attnrnn.train.config import PROTOCOLS
    from attnrnn.train.model_spec import MODEL_OPTIONS

    options = "; ".join(f"{cell}: {text}" for cell, text in MODEL_OPTIONS.items())
    parser.add_argument("--model", default=None,
                        help="gated, lstm, gru, lstm1997, attention:K, attention:inf (the "
                        "recurrences) or conv (MNIST-1D's convolutional classifier) (default "
                        f"{defaults.model}); options after commas, e.g. attention:inf,raw "
                        f"or gated,offset=0 — {options}; attention is bounded unless raw")
    parser.add_argument("--protocol", default=None, choices=PROTOCOLS,
                        help="default: the task's own. heldout (generated tasks): evaluate a "
                        "fixed held-out set every --eval-every steps; test (mnist1d, --data): "
                        "the task's test split, the same way; 1997: the paper's ST3/ABS "
                        "stopping rule, then a fresh test set")
    parser.add_argument("--hidden", type=int, default=None,
                        help="state size m (conv: channels) (" + _model_default("hidden") + ")")
    parser.add_argument("--layers", type=int, default=None,
                        help="stacked recurrences, tanh between them ("
                        + _model_default("layers") + ")")
    parser.add_argument("--bidirectional", type=_yes_no, default=None, metavar="yes|no",
                        help="each layer forward and backward, concatenated ("
                        + _model_default("bidirectional") + ")")
    parser.add_argument("--position", type=_yes_no, default=None, metavar="yes|no",
                        help="append each step's position (in [-1, 1]) to its inputs ("
                        + _model_default("position") + ")")
    parser.add_argument("--readout", choices=("last", "all"), default=None,
                        help="read out the last valid state, or every state (flattened; "
                        "sequences of one length) (" + _model_default("readout") + ")")


def _add_training_options(parser, defaults):
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps, the budget under --protocol 1997 ("
                        + _model_default("steps") + ")")
    parser.add_argument("--batch", type=int, default=None, help=_model_default("batch"))
    parser.add_argument("--optimizer", default=None,
                        help="adam, rmsprop or sgd (" + _model_default("optimizer") + ")")
    parser.add_argument("--lr", type=float, default=None,
                        help="learning rate (" + _model_default("lr") + ")")
    parser.add_argument("--clip", type=_clip, default=None,
                        help="global-norm gradient clip, or 'none' (" + _model_default("clip")
                        + ")")
    parser.add_argument("--seed", type=int, default=None,
                        help="the parameters' and the training data's seed (the held-out set "
                        f"is the same for every seed) (default {defaults.seed})")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps run on device in one chunk, with a held-out evaluation "
                        "after each (" + _model_default("eval_every") + ")")
    parser.add_argument("--heldout", type=int, default=None,
                        help=f"held-out sequences (default {defaults.heldout})")
    parser.add_argument("--max-skips", type=int, default=None,
                        help="stop after this many consecutive non-finite gradients (checked "
                        "after each chunk of --eval-every steps: the run stops at the first "
                        f"chunk end with at least this many; default {defaults.max_skips})")


def task_flag(task):
    return "--data" if task == "--data" else f"--task {task}"


def _config_from(args):
    import dataclasses

    from attnrnn.train.config import TrainConfig
    from attnrnn.train.model_spec import parse_model

    # One flag per TrainConfig field; a flag not given (None) leaves the config's default
    # (the model's, for the training settings). --clip none is None.
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    if "data" in given and "task" in given:
        raise ValueError(f"--data and --task name two tasks (--data {given['data']}, --task "
                         f"{given['task']}); give one")
    task = "--data" if "data" in given else given.get("task", TrainConfig.task)
    # A flag the chosen task does not read is a mistake, not something to ignore.
    if "level" in given and task != "temporal-order":
        raise ValueError(f"--level is for the temporal-order task; {task_flag(task)} "
                         "does not use it")
    if "length" in given and task not in ("adding", "echo", "delayed-letters"):
        raise ValueError(f"--length is for the adding, echo and delayed-letters tasks; "
                         f"{task_flag(task)} does not use it"
                         + (" (its lengths come with --level)"
                            if task == "temporal-order" else ""))
    spec = parse_model(given.get("model", TrainConfig.model)) if "hidden" in given else None
    if spec is not None and spec.FIXED:
        raise ValueError(f"--hidden is not for {spec.name}: {spec.FIXED}; leave --hidden "
                         f"{given['hidden']} out")
    return TrainConfig(**given)


# What --resume may be given besides the folder: the rest would change the run.
_RESUME_FLAGS = ("steps", "devices", "no_progress", "resume")


def _changing_flags(args) -> list[str]:
    """The flags given on the command line that --resume cannot honour (they would change
    the run it continues)."""
    defaults = {"stop_when_solved": False}
    return [f"--{name.replace('_', '-')}" for name, value in vars(args).items()
            if name not in (*_RESUME_FLAGS, "command", "run", "coordinator", "num_processes",
                            "process_id", "distributed")
            and value is not None and value != defaults.get(name)]


def build_parser() -> argparse.ArgumentParser:
    from attnrnn import __version__

    parser = _Parser(prog="attnrnn", description="attnrnn: train and study the models.")
    parser.add_argument("--version", action="version", version=f"attnrnn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _add_train_command(commands)
    compare = commands.add_parser(
        "compare", help="plot finished runs side by side (one figure) and print their results")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run folders of attnrnn train")
    compare.add_argument("--out", required=True,
                         help="the PNG to write (its folder is made if missing)")
    compare.set_defaults(run=_compare)

    debug = commands.add_parser("debug-loss", help="the loss-spike study: spikes and their fix")
    debug.add_argument("--out", default="runs/debug-loss")
    debug.add_argument("--steps", type=int, default=1000, help="steps per run")
    debug.add_argument("--seed", type=int, default=0)
    debug.add_argument("--no-progress", action="store_true")
    debug.set_defaults(run=_debug_loss)
    return parser


def _add_train_command(commands):
    """``attnrnn train`` and its flags."""
    train = commands.add_parser("train", help="train a sequence model (the main job)")
    _add_train_options(train)
    train.add_argument("--out", default=None,
                       help="run folder for metrics.jsonl, curves.png, summary.json, params/ "
                       f"(default: a new folder {_RUNS}/<date>-<time>-<model>; needed with "
                       "several processes)")
    train.add_argument("--checkpoint-every", type=int, default=None,
                       help="also checkpoint every N steps (rounded up to --eval-every)")
    train.add_argument("--resume", metavar="DIR", default=None,
                       help="continue the run in DIR from its latest checkpoint, as it was "
                       "configured; only --steps (a new budget: extends a run, finished or "
                       "not), --devices and --no-progress may go with it (and a multi-host run's "
                       "--coordinator, --num-processes, --process-id, --distributed)")
    train.add_argument("--stop-when-solved", action="store_true",
                       help="stop once the held-out error is <= 1/2560")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--devices", type=int, default=None,
                       help="data-parallel over the first N local devices (default: as many as "
                       "--batch splits over evenly; every device of every process in a "
                       "multi-host run)")
    multi = train.add_argument_group(
        "multi-host", "one run over several processes (one per host): start every process "
        "with the same command and its own --process-id, or with --distributed under SLURM; "
        "--out must be on a filesystem every host sees; the batch is split over the devices "
        "of all processes; a lost process stops the others within seconds, and the same "
        "command with --resume on every host continues")
    multi.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")
    multi.add_argument("--num-processes", type=int, default=None)
    multi.add_argument("--process-id", type=int, default=None)
    multi.add_argument("--distributed", action="store_true",
                       help="take the processes from the environment JAX reads (SLURM, or "
                       "JAX_COORDINATOR_ADDRESS) instead of the three flags above")
    train.set_defaults(run=_train)


def _new_run_folder(model) -> str:
    """``runs/<date>-<time>-<model>``, with ``-2``, ``-3``, … if an earlier run has it."""
    import re
    import time
    from pathlib import Path

    from attnrnn.train.config import TrainConfig

    base = f"{_RUNS}/{time.strftime('%Y%m%d-%H%M%S')}-" + re.sub(
        r"[^A-Za-z0-9._=-]+", "-", model or TrainConfig.model)
    folder, count = base, 1
    while Path(folder).exists():
        count += 1
        folder = f"{base}-{count}"
    return folder


def _train(args) -> int:
    from attnrnn.train import distributed

    several = args.distributed or any(v is not None for v in (
        args.coordinator, args.num_processes, args.process_id))
    if several and args.resume is None and args.out is None:
        print("attnrnn train: error: --out is needed for a run over several processes (each "
              "must name the same folder, on a filesystem every host sees)", file=sys.stderr)
        return 2
    out = args.resume if args.resume is not None else args.out or _new_run_folder(args.model)
    if several:
        try:
            distributed.start(args.coordinator, args.num_processes, args.process_id,
                              on_lost=lambda message: distributed.exit_lost(message, out))
        except (ValueError, RuntimeError) as error:  # e.g. no coordinator within the bound
            print(f"attnrnn train: error: cannot join the multi-process run: "
                  f"{str(error).strip().splitlines()[0][:300]}", file=sys.stderr)
            return 2
    try:
        return _train_here(args, out)
    except Exception as error:
        if not distributed.lost_process(error):
            raise
        lost = f"process {1 - jax.process_index()}" if jax.process_count() == 2 else \
            "another process"
        distributed.exit_lost(f"lost {lost} of the run "
                              f"({str(error).strip().splitlines()[0][:160]})", out)
    finally:
        distributed.finish()


def _train_here(args, out) -> int:
    from attnrnn.train import distributed
    from attnrnn.train.run import RunError, interrupts_kept, resume_run, start_run

    def one_line(message, category, *_args, **_kwargs):
        print(f"attnrnn train: warning: {message}", file=sys.stderr)

    try:
        with interrupts_kept():
            if args.resume is not None:
                changing = _changing_flags(args)
                if changing:
                    raise ValueError(f"--resume continues {args.resume} as it was configured; "
                                     f"{', '.join(changing)} would change it (only --steps, "
                                     "--devices and --no-progress go with --resume)")
                with warnings.catch_warnings():
                    warnings.showwarning = one_line  # restored on leaving the block
                    summary = resume_run(args.resume, steps=args.steps,
                                         progress=not args.no_progress, devices=args.devices)
            else:
                summary = start_run(_config_from(args), out,
                                    checkpoint_every=args.checkpoint_every,
                                    progress=not args.no_progress,
                                    stop_when_solved=args.stop_when_solved, devices=args.devices)
    except (ValueError, TypeError, RunError) as error:
        if distributed.lost_process(error):  # a collective with a lost process: see _train
            raise
        print(f"attnrnn train: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attnrnn train: interrupted{_resumable(out)}", file=sys.stderr)
        return 130
    except jax.errors.JaxRuntimeError as error:
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        print(f"attnrnn train: error: out of memory ({_first_line(error)}); try a smaller "
              f"--batch, --heldout or sequence length{_resumable(out)}", file=sys.stderr)
        return 1
    _print_summary(summary)
    confusion = ", confusion.png" if summary.get("test_confusion") is not None else ""
    print(f"wrote {out}/: metrics.jsonl, curves.png{confusion}, summary.json, params/, "
          "checkpoints/")
    return 0 if summary["stop_reason"] in ("completed", "solved", "stopped: ST3") else 1


def _first_line(error) -> str:
    line = next((line for line in str(error).splitlines() if "RESOURCE_EXHAUSTED" in line),
                str(error).splitlines()[0])
    return line.strip()[:200]


def _resumable(out) -> str:
    """Where a stopped run stands, for the one line that says so."""
    from pathlib import Path

    folder = Path(out)
    if not (folder / "config.json").exists():
        return " before the run folder was made"
    steps = [int(p.name) for p in (folder / "checkpoints").glob("[0-9]*") if p.name.isdigit()]
    where = f"at the checkpoint of step {max(steps)}" if steps else "from the start"
    return f"; attnrnn train --resume {out} continues {where}"


def _print_summary(summary):
    if summary.get("protocol") == "1997":
        stopped = summary["sequences_to_stop"]
        print(f"{summary['config']['model']} on {summary['config']['task']} (protocol 1997): "
              + (f"stopped (ST3) after {stopped} sequences" if stopped else
                 f"did not stop within {summary['sequences_seen']} sequences")
              + f"; {summary['test_errors']} test errors of {summary['test_size']}; "
              f"{summary['num_params']} weights; {summary['skipped_updates']} skipped updates "
              f"({summary['wall_seconds']:.1f} s)")
        return
    if summary.get("protocol") == "test":
        print(f"{summary['config']['model']} on {summary['config']['task']}: test accuracy "
              f"{summary['test_accuracy']:.4f} ({summary['test_size']} test sequences, loss "
              f"{summary['test_loss']:.4f}) after {summary['sequences_seen']} sequences "
              f"({summary['wall_seconds']:.1f} s); {summary['num_params']} weights; "
              f"{summary['skipped_updates']} skipped updates; {summary['stop_reason']}")
        return
    solved = summary["sequences_to_solve"]
    print(
        f"{summary['config']['model']} on {summary['config']['task']}: held-out accuracy "
        f"{summary['heldout_accuracy']:.4f} after {summary['sequences_seen']} sequences "
        f"({summary['wall_seconds']:.1f} s); "
        + (f"solved (error <= 1/2560) after {solved} sequences" if solved else "not solved")
        + f"; {summary['skipped_updates']} skipped updates; {summary['stop_reason']}"
    )


def _compare(args) -> int:
    from pathlib import Path

    from attnrnn.train.plots import plot_curves
    from attnrnn.train.run import task_title, read_metrics

    finished = []
    for folder in args.runs:
        try:
            summary = json.loads((Path(folder) / "summary.json").read_text())
            history = read_metrics(folder)
        except (OSError, ValueError) as error:
            print(f"attnrnn compare: error: {folder} is not a finished run ({error})",
                  file=sys.stderr)
            return 2
        finished.append((folder, summary["config"], history))
        print(f"{folder}: ", end="")
        _print_summary(summary)
    titles = list(dict.fromkeys(task_title(config) for _, config, _ in finished))  # run order
    runs = {}
    for folder, config, history in finished:
        # every run says its task when the runs are on several; a repeated label its folder
        label = config["model"] + (f" on {task_title(config)}" if len(titles) > 1 else "")
        runs[label if label not in runs else f"{label} ({folder})"] = history
    try:  # a new folder for the figure is made; one that cannot be written is one line
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        plot_curves(runs, args.out, title=", ".join(titles))
    except OSError as error:
        print(f"attnrnn compare: error: cannot write --out {args.out}: "
              f"{error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def _debug_loss(args) -> int:
    from attnrnn.train.debug_loss import run_study
    from attnrnn.train.run import RunError

    try:
        run_study(args.out, steps=args.steps, seed=args.seed, progress=not args.no_progress)
    except (ValueError, RunError) as error:
        print(f"attnrnn debug-loss: error: {error}", file=sys.stderr)
        return 2
    return 0


class _ClosablePipe:
    """``sys.stdout`` that outlives its reader: ``attnrnn train … | head -1`` closes the pipe
    after a line, and the run must still finish its files and exit quietly (it ended in a
    ``BrokenPipeError`` traceback). Writes after the reader has gone are dropped."""

    def __init__(self, stream):
        self._stream, self.closed_by_reader = stream, False

    def write(self, text):
        if not self.closed_by_reader:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self):
        if not self.closed_by_reader:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self):
        self.closed_by_reader = True
        # What Python flushes at exit goes nowhere (else: "Exception ignored ... BrokenPipe").
        os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not isinstance(sys.stdout, _ClosablePipe) and hasattr(sys.stdout, "fileno"):
        try:
            sys.stdout.fileno()
        except (OSError, ValueError):  # not a real file (a test's capture): leave it
            return args.run(args)
        sys.stdout = _ClosablePipe(sys.stdout)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
