"""AttentionRNN(∞): the library's online softmax against the best quadratic version.

The quadratic version keeps every past state's score and value in preallocated buffers
(cached, so each state's ``Q h``, ``K h``, ``V h`` are computed once) and softmaxes over the
whole buffer each step: O(T) work and memory per step. The library's carries a running max,
denominator and weighted value sum: O(m) per step.

    python benchmarks/attention_inf.py            # T in {256, 1024, 4096}, batch 16, m = 64
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from jax import lax

import attnrnn as ar
from common import compiled_temp_bytes, fmt_mib, fmt_ms, machine, markdown_table, median_seconds


def quadratic_attention_inf(params, xs):
    """AttentionRNN(∞) with every past state's score and value cached in (T,) and (T, m)."""
    T = xs.shape[0]
    m = params.V_x.shape[0]
    w0s = jnp.sum((xs @ params.Q_x.T) * (xs @ params.K_x.T), -1)
    v0s = xs @ params.V_x.T
    Q, K, V = params.Q_h[0], params.K_h[0], params.V_h[0]

    def step(carry, inputs):
        scores, values = carry
        t, w0, v0 = inputs
        filled = jnp.arange(T) < t
        w = jnp.where(filled, scores, -jnp.inf)
        top = jnp.maximum(w0, jnp.max(w))
        e = jnp.exp(w - top)
        e0 = jnp.exp(w0 - top)
        h = (e0 * v0 + e @ values) / (e0 + jnp.sum(e))
        scores = scores.at[t].set((Q @ h) @ (K @ h))
        values = values.at[t].set(V @ h)
        return (scores, values), h

    init = (jnp.zeros((T,), xs.dtype), jnp.zeros((T, m), xs.dtype))
    _, hs = lax.scan(step, init, (jnp.arange(T), w0s, v0s))
    return hs


def online(params, xs):
    return ar.attention_rnn(params, xs, k=None)


def batched(fn):
    return jax.jit(jax.vmap(fn, in_axes=(None, 0)))


def loss_grad(fn):
    return jax.jit(jax.grad(lambda p, xs: jnp.sum(jax.vmap(fn, in_axes=(None, 0))(p, xs) ** 2)))


def run(lengths, batch=16, m=64, backward_limit=1024):
    params = ar.attention_rnn_init(jax.random.PRNGKey(0), m, m, k=None)
    rows, measured = [], {}
    for T in lengths:
        xs = jax.random.normal(jax.random.PRNGKey(T), (batch, T, m)) / jnp.sqrt(m)
        assert jnp.allclose(batched(online)(params, xs[:2, :64]),
                            batched(quadratic_attention_inf)(params, xs[:2, :64]), atol=1e-4)
        fwd_online = median_seconds(batched(online), params, xs)
        fwd_quad = median_seconds(batched(quadratic_attention_inf), params, xs, repeats=3)
        mem_online = compiled_temp_bytes(jax.vmap(online, in_axes=(None, 0)), params, xs)
        mem_quad = compiled_temp_bytes(
            jax.vmap(quadratic_attention_inf, in_axes=(None, 0)), params, xs)
        bwd_online = median_seconds(loss_grad(online), params, xs, repeats=3)
        if T <= backward_limit:
            bwd_quad = median_seconds(loss_grad(quadratic_attention_inf), params, xs, repeats=3)
            bwd_cells = (fmt_ms(bwd_quad), f"{bwd_quad / bwd_online:.1f}x")
        else:
            # Reverse mode keeps each step's (T, m) buffer: T² m B floats, 68 GB at T = 4096.
            gib = T * T * m * batch * 4 / 2**30
            bwd_cells = (f"not run (needs ~{gib:.0f} GiB)", "-")
        # Floats carried from step to step, per sequence: what grows with T, or not.
        carry_online = sum(x.size for x in jax.tree.leaves(
            ar.attention_rnn_initial_state(params, k=None)))
        carry_quad = T + T * m
        measured[T] = {"speed-up": fwd_quad / fwd_online, "carry": carry_online}
        rows.append((
            T, fmt_ms(fwd_online), fmt_ms(fwd_quad), f"{fwd_quad / fwd_online:.1f}x",
            fmt_ms(bwd_online), *bwd_cells, carry_online, carry_quad, fmt_mib(mem_online),
            fmt_mib(mem_quad),
        ))
        print(rows[-1], flush=True)
    header = ("T", "online fwd ms", "quadratic fwd ms", "fwd speed-up", "online fwd+bwd ms",
              "quadratic fwd+bwd ms", "fwd+bwd speed-up", "online carry floats",
              "quadratic carry floats", "online fwd XLA temp MiB", "quadratic fwd XLA temp MiB")
    return markdown_table(header, rows), measured


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    args = parser.parse_args()
    print(f"AttentionRNN(inf), batch 16, n = m = d = 64, float32 on {machine()}")
    print(run(args.lengths)[0])


if __name__ == "__main__":
    main()
