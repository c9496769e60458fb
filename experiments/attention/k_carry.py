"""AttentionRNN(k): which carry is faster — the last k states (the library's), or each past
state's per-lag scores and values computed once when the state is made?

    python experiments/attention/k_carry.py

Both do the same arithmetic per step (k projections of k(2d+m) rows); the window does them
as k batched matrix-vector products on k different states, the cache as one stacked product
on the new state but carries k x k scores and k x k x m values.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax

import attnrnn as ar

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))  # the benchmarks' timing
from common import fmt_ms, machine, markdown_table, median_seconds  # noqa: E402


def cached_attention_k(params, xs, k):
    """AttentionRNN(k) carrying, for each of the last k states, its scores and values for
    every lag: ``scores[j, i] = w_{i+1}(h[t-j])``, ``values[j, i] = V_{i+1} h[t-j]``."""
    m = params.V_x.shape[0]
    w0s = jnp.sum((xs @ params.Q_x.T) * (xs @ params.K_x.T), -1)
    v0s = xs @ params.V_x.T
    lags = jnp.arange(k)

    def step(carry, lag0):
        scores, values = carry
        w0, v0 = lag0
        w = jnp.concatenate([w0[None], scores[lags, lags]])  # lag i reads state i-1 back
        v = jnp.concatenate([v0[None], values[lags, lags]])
        h = jax.nn.softmax(w) @ v
        new_scores = jnp.sum(jnp.einsum("ldm,m->ld", params.Q_h, h)
                             * jnp.einsum("ldm,m->ld", params.K_h, h), -1)
        new_values = jnp.einsum("lom,m->lo", params.V_h, h)
        scores = jnp.concatenate([new_scores[None], scores[:-1]])
        values = jnp.concatenate([new_values[None], values[:-1]])
        return (scores, values), h

    # Zero states score 0 and have zero values at every lag.
    init = (jnp.zeros((k, k), xs.dtype), jnp.zeros((k, k, m), xs.dtype))
    return lax.scan(step, init, (w0s, v0s))[1]


def main():
    batch, m, T = 16, 64, 1024
    print(f"AttentionRNN(k) carry, batch {batch}, n = m = d = {m}, T = {T}, float32 on "
          f"{machine()}")
    rows = []
    for k in (1, 2, 4, 8):
        params = ar.attention_rnn_init(jax.random.PRNGKey(0), m, m, k=k)
        xs = jax.random.normal(jax.random.PRNGKey(1), (batch, T, m)) / jnp.sqrt(m)
        window = jax.jit(jax.vmap(lambda x: ar.attention_rnn(params, x, k=k)))
        cached = jax.jit(jax.vmap(lambda x: cached_attention_k(params, x, k)))
        assert jnp.allclose(window(xs[:2, :50]), cached(xs[:2, :50]), atol=1e-4)
        t_window, t_cached = median_seconds(window, xs), median_seconds(cached, xs)
        rows.append((k, fmt_ms(t_window), fmt_ms(t_cached), f"{t_cached / t_window:.2f}"))
        print(rows[-1], flush=True)
    print(markdown_table(("k", "window of states ms", "cached scores+values ms",
                          "cached / window"), rows))


if __name__ == "__main__":
    main()
