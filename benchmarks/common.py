"""Timing helpers shared by the benchmark scripts: medians of repeated, synchronised runs."""

from __future__ import annotations

import os
import platform
import statistics
import time

import jax


def median_seconds(fn, *args, repeats: int = 5, min_time: float = 0.2) -> float:
    """Median wall time of ``fn(*args)`` after one compile-and-warm-up call.

    Each sample runs ``fn`` enough times to last about ``min_time`` so that short calls are
    not dominated by timer noise; the result is per call.
    """
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    once = time.perf_counter() - start
    inner = max(1, int(min_time / max(once, 1e-9)))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            out = fn(*args)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def interleaved_seconds(fns: dict, *args, rounds: int = 9, min_time: float = 0.1):
    """Per-call median time of each of ``fns`` and its median ratio to the first.

    The candidates are timed in turn, round after round, so that a slow spell of a shared
    machine hits them all alike; the ratio is the median of the per-round ratios.

    Returns:
      ``{name: (seconds, first_seconds / seconds)}``.
    """
    inner = {}
    for name, fn in fns.items():
        jax.block_until_ready(fn(*args))
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        inner[name] = max(1, int(min_time / max(time.perf_counter() - start, 1e-9)))
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner[name]):
                out = fn(*args)
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - start) / inner[name])
    first = samples[next(iter(fns))]
    return {name: (statistics.median(times),
                   statistics.median(a / b for a, b in zip(first, times)))
            for name, times in samples.items()}


def compiled_temp_bytes(fn, *args) -> int:
    """XLA's own count of the temporary buffers a jitted ``fn`` needs (its working memory,
    beyond inputs and outputs)."""
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(analysis.temp_size_in_bytes) if analysis is not None else -1


def machine() -> str:
    device = jax.devices()[0]
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"jax {jax.__version__}, {device.platform} ({device.device_kind})"
    )


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def fmt_mib(n: int) -> str:
    return f"{n / 2**20:.1f}"
