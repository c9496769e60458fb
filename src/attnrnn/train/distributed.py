"""Several processes, one run (``attnrnn train --coordinator HOST:PORT --num-processes N
--process-id I``): ``jax.distributed`` with gloo collectives between CPU processes, bounds on
every wait, and a watchdog so that a lost process stops the others quickly with one line.

Every process writes a heartbeat (a counter) into the coordination service's key-value store
every ``PERIOD`` seconds and reads the others'. A process whose counter has not moved for
``LOST_AFTER`` seconds is lost: the others print one line that names it and says how to
continue, and exit at once (exit 1) — a normal exit would wait at JAX's shutdown barrier for
the lost process and then abort with pages of logs. A collective that fails because its peer
is gone (gloo: "Connection closed by peer") ends the same way, usually sooner. When process 0,
which hosts the coordination service, is lost, the others cannot reach the store and say so.
JAX's own heartbeat (``HEARTBEAT_TIMEOUT``) is the backstop, set longer than ours.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import jax

__all__ = ["start", "finish", "lost_process", "exit_lost", "PERIOD", "LOST_AFTER",
           "HEARTBEAT_TIMEOUT"]

PERIOD = 1.0
LOST_AFTER = 5.0
HEARTBEAT_TIMEOUT = 30  # JAX's, in whole seconds
# What a failed collective or the coordination service says when a process is gone.
_LOST_SIGNS = ("Gloo", "Connection closed by peer", "heartbeat", "UNAVAILABLE",
               "coordination service")
_done = threading.Event()
_client = []  # the coordination client, this process's id and the watchdog, once started


def start(coordinator=None, num_processes=None, process_id=None, *, on_lost):
    """``jax.distributed.initialize`` (the arguments, or the environment JAX reads, e.g.
    SLURM's) and the watchdog; ``on_lost(message)`` is called from the watchdog's thread
    with one line when another process is lost (it should exit)."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=120,
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT,
                               shutdown_timeout_seconds=60)
    from jax._src.distributed import global_state  # the client jax.distributed made

    watchdog = threading.Thread(target=_watch, args=(global_state.client, jax.process_index(),
                                                     jax.process_count(), on_lost),
                                name="attnrnn-watchdog", daemon=True)
    _client[:] = [global_state.client, jax.process_index(), watchdog]
    watchdog.start()


def finish():
    """This process is done (whatever the outcome): the others stop watching it — said now,
    not at the watchdog's next beat, since the process may be about to exit."""
    _done.set()
    if _client:
        client, me, watchdog = _client
        watchdog.join(timeout=5 * PERIOD)  # its last beat must not overwrite "done"
        try:
            client.key_value_set(f"attnrnn/alive/{me}", "done", allow_overwrite=True)
        except Exception:  # the coordinator is gone already: nobody is left to tell
            pass


def lost_process(error) -> bool:
    """Whether ``error`` is a collective or the coordination service failing because a process
    of a multi-process run is gone."""
    return jax.process_count() > 1 and any(sign in str(error) for sign in _LOST_SIGNS)


def _watch(client, me, count, on_lost):
    """Beats and watches until this process is done (``finish``): then it stops quietly,
    since the service may be shutting down under it (process 0 printed its thread's
    ``UNAVAILABLE`` traceback after a finished run)."""
    beats, seen = 0, {p: (None, time.monotonic()) for p in range(count) if p != me}
    while not _done.is_set():
        beats += 1
        try:
            client.key_value_set(f"attnrnn/alive/{me}", str(beats), allow_overwrite=True)
            for process, (before, since) in seen.items():
                value = _value(client, f"attnrnn/alive/{process}")
                if value == "done":
                    continue
                if value != before:
                    seen[process] = (value, time.monotonic())
                elif time.monotonic() - since > LOST_AFTER:
                    return on_lost(f"process {process} stopped answering "
                                   f"(no heartbeat for {LOST_AFTER:g} s)")
        except Exception as error:  # the store is process 0's: it is gone
            if _done.is_set():  # finished meanwhile: nothing to watch any more
                return None
            if me != 0:
                return on_lost("process 0 (the coordinator) cannot be reached "
                               f"({type(error).__name__})")
            raise
        _done.wait(PERIOD)
    return None


def _value(client, key):
    try:
        return client.key_value_try_get(key)
    except Exception as error:  # not written yet
        if "NOT_FOUND" in str(error) or "not found" in str(error).lower():
            return None
        raise


def exit_lost(message, out):
    """The one line for a lost process, then exit 1 now (see the module docstring)."""
    print(f"attnrnn train: error: process {jax.process_index()}: {message}; start every "
          f"process again with --resume {out} to continue from the newest checkpoint",
          file=sys.stderr, flush=True)
    os._exit(1)
