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
