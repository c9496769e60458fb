"""The ``attnrnn`` command's entry point, outside the ``attnrnn`` package on purpose: importing
the package loads JAX (seconds), and Ctrl-C then would end in a long ``KeyboardInterrupt``
traceback raised inside some library's import. Here nothing is imported before the handler is
in place, so Ctrl-C at any moment is one line and exit code 130, as during a run. Without the
``train`` extra the command says which to install, in one line."""

import os
import signal
import sys

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process Ctrl-C stopped


def _interrupted_while_importing(*_):
    # Exit at once: nothing is made yet, and a KeyboardInterrupt raised here could land in a
    # garbage-collector callback of JAX's, which Python prints and ignores (the run went on).
    print("attnrnn: interrupted", file=sys.stderr)
    os._exit(INTERRUPTED)


def main() -> int:
    signal.signal(signal.SIGINT, _interrupted_while_importing)
    try:
        from attnrnn.train.cli import main as command
    except ImportError as error:
        if error.name != "attnrnn.train":  # not the missing `train` extra: a real bug
            raise
        print(f"attnrnn: {error}", file=sys.stderr)
        return 1

    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = command()
        # Done: a Ctrl-C from now on changes nothing (during the interpreter's teardown the
        # default handler is back, and the process would end by the signal, exit -2).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        print("attnrnn: interrupted", file=sys.stderr)
        code = INTERRUPTED
    if code == INTERRUPTED:
        # Everything the run keeps is written (checkpoints are saved synchronously); skip
        # the interpreter's teardown, where runtime threads still running can crash it.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(INTERRUPTED)
    return code


if __name__ == "__main__":
    sys.exit(main())
