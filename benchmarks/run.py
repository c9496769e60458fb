"""``make bench``: the library against the obvious implementations, side by side in one run.

Prints each table as it is measured and writes them all to ``docs/benchmarks.md``. The
"obvious" versions are what one writes by hand from the equations: every projection inside
a ``lax.scan`` step and autodiff for the backward pass. PyTorch rows run only when torch is
installed.

    .venv/bin/python benchmarks/run.py [--quick] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import attnrnn as ar
import attention_inf
from attnrnn import models, tasks, training
from common import fmt_ms, machine, markdown_table, median_seconds


def obvious_gated(params, xs):
    """The gated RNN as one writes it first: all three products inside the step."""
    W_c, W_h, W_x = params

    def step(h, x):
        c = jax.nn.sigmoid(W_c @ x + W_h @ h)
        h = c * h + (1 - c) * (W_x @ x)
        return h, h

    return lax.scan(step, jnp.zeros(W_h.shape[0], xs.dtype), xs)[1]


def hoisted_autodiff_gated(params, xs, unroll=1):
    """Input projections hoisted out of the loop, autodiff for the backward pass."""
    return ar.gated_rnn(params, xs, backward="autodiff", unroll=unroll)


def obvious_attention_k(params, xs, k):
    """AttentionRNN(k) from the equations: every lag's projections inside the step."""
    m = params.V_x.shape[0]

    def step(history, x):
        scores = [(params.Q_x @ x) @ (params.K_x @ x)]
        values = [params.V_x @ x]
        for i in range(k):
            scores.append((params.Q_h[i] @ history[i]) @ (params.K_h[i] @ history[i]))
            values.append(params.V_h[i] @ history[i])
        h = jax.nn.softmax(jnp.stack(scores)) @ jnp.stack(values)
        return jnp.concatenate([h[None], history[:-1]]), h

    return lax.scan(step, jnp.zeros((k, m), xs.dtype), xs)[1]


def batched(fn):
    return jax.jit(jax.vmap(fn, in_axes=(None, 0)))


def fwd_bwd(fn):
    return jax.jit(jax.grad(lambda p, xs: jnp.sum(jax.vmap(fn, in_axes=(None, 0))(p, xs) ** 2)))


def matmul_peak(size=2048):
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size))
    seconds = median_seconds(jax.jit(lambda a: a @ a), a)
    return 2 * size**3 / seconds / 1e9


def gated_table(batch, T, n, m, peak, unrolls=(1, 4, 8, 16)):
    params = ar.gated_rnn_init(jax.random.PRNGKey(0), n, m)
    xs = jax.random.normal(jax.random.PRNGKey(1), (batch, T, n))
    flops = batch * T * 2 * m * (2 * n + m)  # W_c x, W_x x and W_h h per step
    candidates = {"obvious scan + autodiff": obvious_gated,
                  "hoisted + autodiff (unroll 1)": hoisted_autodiff_gated}
    for u in unrolls:
        candidates[f"attnrnn fused (unroll {u})"] = (
            lambda p, x, u=u: ar.gated_rnn(p, x, unroll=u))
    reference = batched(obvious_gated)(params, xs)
    times = {}
    for name, fn in candidates.items():
        np.testing.assert_allclose(batched(fn)(params, xs), reference, rtol=2e-4, atol=2e-5)
        times[name] = (median_seconds(batched(fn), params, xs),
                       median_seconds(fwd_bwd(fn), params, xs))
    base_f, base_b = times["obvious scan + autodiff"]
    rows = [(name, fmt_ms(f), f"{base_f / f:.2f}x", fmt_ms(b), f"{base_b / b:.2f}x",
             f"{flops / f / 1e9 / peak:.0%}") for name, (f, b) in times.items()]
    header = ("implementation", "fwd ms", "fwd speed-up", "fwd+bwd ms", "fwd+bwd speed-up",
              "fwd % of matmul peak")
    return markdown_table(header, rows), times


def attention_table(lengths, batch=16, m=64):
    gated = ar.gated_rnn_init(jax.random.PRNGKey(0), m, m)
    p2 = ar.attention_rnn_init(jax.random.PRNGKey(0), m, m, k=2)
    pinf = ar.attention_rnn_init(jax.random.PRNGKey(0), m, m, k=None)
    rows = []
    for T in lengths:
        xs = jax.random.normal(jax.random.PRNGKey(T), (batch, T, m)) / jnp.sqrt(m)
        t = {
            "gated": median_seconds(batched(lambda p, x: ar.gated_rnn(p, x)), gated, xs),
            "k2": median_seconds(batched(lambda p, x: ar.attention_rnn(p, x, k=2)), p2, xs),
            "k2 obvious": median_seconds(batched(lambda p, x: obvious_attention_k(p, x, 2)),
                                         p2, xs),
            "k2 bwd": median_seconds(fwd_bwd(lambda p, x: ar.attention_rnn(p, x, k=2)), p2, xs),
            "k2 obvious bwd": median_seconds(
                fwd_bwd(lambda p, x: obvious_attention_k(p, x, 2)), p2, xs),
            "inf": median_seconds(batched(attention_inf.online), pinf, xs),
            "inf quadratic": median_seconds(batched(attention_inf.quadratic_attention_inf),
                                            pinf, xs, repeats=3),
            "inf bwd": median_seconds(fwd_bwd(attention_inf.online), pinf, xs),
        }
        rows.append((T, fmt_ms(t["k2"]), fmt_ms(t["k2 obvious"]),
                     f"{t['k2 obvious'] / t['k2']:.2f}x", fmt_ms(t["k2 bwd"]),
                     fmt_ms(t["k2 obvious bwd"]), f"{t['k2 obvious bwd'] / t['k2 bwd']:.2f}x",
                     fmt_ms(t["inf"]), fmt_ms(t["inf quadratic"]),
                     f"{t['inf quadratic'] / t['inf']:.1f}x", fmt_ms(t["inf bwd"]),
                     f"{1e6 * t['inf'] / T:.1f}", f"{1e6 * t['gated'] / T:.1f}",
                     f"{t['inf'] / t['gated']:.2f}"))
        print(rows[-1], flush=True)
    header = ("T", "(2) fwd ms", "(2) obvious fwd ms", "speed-up", "(2) fwd+bwd ms",
              "(2) obvious fwd+bwd ms", "speed-up", "(∞) fwd ms", "(∞) quadratic fwd ms",
              "speed-up", "(∞) fwd+bwd ms", "(∞) µs/step", "gated µs/step", "(∞) / gated")
    return markdown_table(header, rows)


def conv_table():
    """A small-CNN layer: batch 64, 32x32x32 -> 64 filters 3x3, padding 1."""
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 32, 32, 32))
    w, _ = ar.conv_init(jax.random.PRNGKey(1), 32, 64, (3, 3))
    ours = jax.jit(jax.vmap(lambda x: ar.conv(x, w, padding=1)))

    def batched_conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)))

    direct = jax.jit(lambda x: batched_conv(x, w))
    np.testing.assert_allclose(ours(x), direct(x), rtol=1e-4, atol=1e-4)
    g = jax.random.normal(jax.random.PRNGKey(2), (64, 64, 32, 32))
    closed = jax.jit(jax.vmap(lambda x, g: ar.conv_weight_grad(x, g, 3, padding=1)))
    autodiff = jax.jit(lambda x, g: jax.vjp(lambda w: batched_conv(x, w), w)[1](g)[0])
    np.testing.assert_allclose(closed(x, g).sum(0), autodiff(x, g), rtol=1e-3, atol=1e-2)
    t = {"ours": median_seconds(ours, x), "direct": median_seconds(direct, x),
         "closed dW": median_seconds(lambda x, g: closed(x, g).sum(0), x, g),
         "vjp dW": median_seconds(autodiff, x, g)}
    rows = [("forward: attnrnn.conv under vmap", fmt_ms(t["ours"]), "batched lax.conv",
             fmt_ms(t["direct"]), f"{t['direct'] / t['ours']:.2f}x"),
            ("dW: conv_weight_grad under vmap, summed", fmt_ms(t["closed dW"]), "jax.vjp",
             fmt_ms(t["vjp dW"]), f"{t['vjp dW'] / t['closed dW']:.2f}x")]
    return markdown_table(("attnrnn", "ms", "baseline", "baseline ms", "speed-up"), rows)


def obvious_train_step(optimizer, task, batch_size):
    """A jitted step as one writes it first: obvious scan, batch made by a separate jitted
    call each step, host loop over steps."""
    def loss(params, xs, labels, mask):
        def one(x, m):
            W_c, W_h, W_x = params.cell
            def step(h, inputs):
                x_t, keep = inputs
                c = jax.nn.sigmoid(W_c @ x_t + W_h @ h)
                return jnp.where(keep, c * h + (1 - c) * (W_x @ x_t), h), None
            h = lax.scan(step, jnp.zeros(W_h.shape[0]), (x, m))[0]
            return params.readout.W @ h + params.readout.b
        logits = jax.vmap(one)(xs, mask)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(params, opt_state, batch):
        value, grads = jax.value_and_grad(loss)(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    sample = jax.jit(lambda key: task.sample(key, batch_size))
    return step, sample


def training_table(steps=200, batch=32, hidden=32):
    task = tasks.make_task("temporal-order", level="moderate")
    optimizer = training.make_optimizer("adam", 3e-3, 1.0)
    params = models.model_init(jax.random.PRNGKey(0), "gated", input_size=8,
                               hidden_size=hidden, num_classes=4)
    step, sample = obvious_train_step(optimizer, task, batch)

    def run_obvious():
        p, s = params, optimizer.init(params)
        key = jax.random.PRNGKey(0)
        for _ in range(steps):
            key, sub = jax.random.split(key)
            p, s, value = step(p, s, sample(sub))
        return value

    chunk = training.make_train_chunk(optimizer, task, model="gated", batch_size=batch,
                                      steps_per_chunk=20)

    def run_library():
        # The chunk donates its input state, so every run starts from a fresh copy.
        fresh = jax.tree.map(jnp.copy, params)
        state = training.init_train_state(jax.random.PRNGKey(1), fresh, optimizer)
        for _ in range(steps // 20):
            state, metrics = chunk(state)
        return metrics["loss"]

    t_obvious = median_seconds(run_obvious, repeats=3, min_time=0)
    t_library = median_seconds(run_library, repeats=3, min_time=0)
    rows = [("obvious jitted step (host loop, data per step)", f"{steps * batch / t_obvious:,.0f}"),
            ("attnrnn make_train_chunk (20 steps per call, data on device)",
             f"{steps * batch / t_library:,.0f}")]
    torch_rate = torch_course_loop(steps, batch, hidden)
    if torch_rate:
        rows.append(("PyTorch nn.LSTM course loop", f"{torch_rate:,.0f}"))
    rows.append(("attnrnn / obvious", f"{t_obvious / t_library:.2f}x"))
    if torch_rate:
        rows.append(("attnrnn / PyTorch", f"{steps * batch / t_library / torch_rate:.2f}x"))
    return markdown_table(("training step, gated RNN hidden 32, batch 32, moderate",
                           "sequences/s"), rows)


def torch_course_loop(steps, batch, hidden):
    """The course's PyTorch loop: nn.LSTM + linear readout, adam, on numpy batches."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    task = tasks.make_task("temporal-order", level="moderate")
    lstm, readout = torch.nn.LSTM(8, hidden, batch_first=True), torch.nn.Linear(hidden, 4)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(readout.parameters()), lr=3e-3)
    batches = [tuple(torch.from_numpy(np.asarray(a)) for a in task.sample(
        jax.random.PRNGKey(i), batch)[:2]) for i in range(steps)]

    def run():
        for xs, labels in batches:
            opt.zero_grad()
            out, _ = lstm(xs)
            loss = torch.nn.functional.cross_entropy(readout(out[:, -1]), labels.long())
            loss.backward()
            opt.step()

    run()
    start = time.perf_counter()
    run()
    return steps * batch / (time.perf_counter() - start)


def torch_gated_table(batch, T, n, m):
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed: its rows were skipped."
    rows = []
    xs = torch.randn(batch, T, n)
    for name, module in (("nn.GRU", torch.nn.GRU(n, m, batch_first=True)),
                         ("nn.LSTM", torch.nn.LSTM(n, m, batch_first=True))):
        def fwd():
            with torch.no_grad():
                module(xs)

        def fwd_bwd():
            module(xs)[0].pow(2).sum().backward()

        rows.append((name, fmt_ms(_torch_time(fwd)), fmt_ms(_torch_time(fwd_bwd))))
    W_c, W_h, W_x = (torch.randn(m, k) / k**0.5 for k in (n, m, n))

    def eager_cell():
        h = torch.zeros(batch, m)
        for t in range(T):
            c = torch.sigmoid(xs[:, t] @ W_c.T + h @ W_h.T)
            h = c * h + (1 - c) * (xs[:, t] @ W_x.T)

    rows.append(("eager loop of the gated cell (forward)", fmt_ms(_torch_time(eager_cell)), "-"))
    return markdown_table(("PyTorch", "fwd ms", "fwd+bwd ms"), rows)


def _torch_time(fn, repeats=5):
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parents[1] / "docs" / "benchmarks.md"))
    parser.add_argument("--quick", action="store_true", help="short sequences, for a smoke run")
    args = parser.parse_args()
    lengths = (64, 128) if args.quick else (256, 1024, 4096)
    sections = [f"# Benchmarks\n\nMeasured by `make bench` (`benchmarks/run.py`) in one process "
                f"on: {machine()}. Medians of repeated runs after a compile-and-warm-up call; "
                "float32. Ratios compare rows of the same table, measured minutes apart in the "
                "same process."]

    def section(title, body):
        print(f"\n## {title}\n\n{body}", flush=True)
        sections.append(f"## {title}\n\n{body}")

    peak = matmul_peak(1024 if args.quick else 2048)
    section("Machine", f"Large float32 matmul: {peak:.0f} GFLOP/s (the 'peak' below).")
    big = (64, 64 if args.quick else 512, 256, 256)
    table, _ = gated_table(*big, peak)
    section(f"Gated RNN, batch {big[0]}, T = {big[1]}, n = m = {big[3]}", table)
    section("PyTorch at the same size", torch_gated_table(*big))
    table, _ = gated_table(1, 200 if args.quick else 1000, 64, 64, peak)
    section("Gated RNN, batch 1, T = 1000, n = m = 64", table)
    section("AttentionRNN(2) and (∞), batch 16, n = m = d = 64 (gated RNN per step alongside)",
            attention_table(lengths))
    section("AttentionRNN(∞) against the quadratic version, with memory",
            attention_inf.run(lengths, backward_limit=256 if args.quick else 1024))
    section("Convolution, a small-CNN layer (batch 64, 32 -> 64 channels, 32x32, 3x3)",
            conv_table())
    section("Training step of the main job", training_table(steps=40 if args.quick else 200))
    Path(args.out).write_text("\n\n".join(sections) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
