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
import cells
from attnrnn import train as training
from attnrnn.train import models, tasks
from common import (compiled_temp_bytes, fmt_mib, fmt_ms, interleaved_seconds, machine,
                    markdown_table, median_seconds)


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


def gated_table(batch, T, n, m, peak, unrolls=(1, 4, 8)):
    params = ar.gated_rnn_init(jax.random.PRNGKey(0), n, m)
    xs = jax.random.normal(jax.random.PRNGKey(1), (batch, T, n))
    flops = batch * T * 2 * m * (2 * n + m)  # W_c x, W_x x and W_h h per step
    candidates = {"obvious scan + autodiff": obvious_gated,
                  "hoisted + autodiff (unroll 1)": hoisted_autodiff_gated}
    for u in unrolls:
        candidates[f"attnrnn fused (unroll {u})"] = (
            lambda p, x, u=u: ar.gated_rnn(p, x, unroll=u))
    candidates["attnrnn fused, remat √T"] = lambda p, x: ar.gated_rnn(p, x, remat_chunk="sqrt")
    reference = batched(obvious_gated)(params, xs)
    for fn in candidates.values():
        np.testing.assert_allclose(batched(fn)(params, xs), reference, rtol=2e-4, atol=2e-5)
    forward = interleaved_seconds({k: batched(f) for k, f in candidates.items()}, params, xs)
    both = interleaved_seconds({k: fwd_bwd(f) for k, f in candidates.items()}, params, xs)
    rows = [(name, fmt_ms(forward[name][0]), f"{forward[name][1]:.2f}x", fmt_ms(both[name][0]),
             f"{both[name][1]:.2f}x", f"{flops / forward[name][0] / 1e9 / peak:.0%}")
            for name in candidates]
    header = ("implementation", "fwd ms", "fwd speed-up", "fwd+bwd ms", "fwd+bwd speed-up",
              "fwd % of matmul peak")
    return markdown_table(header, rows), (forward, both)


def attention_table(lengths, batch=16, m=64):
    """AttentionRNN(2) against its obvious scan, and (∞)'s time per step against the gated
    RNN's (its comparison with the quadratic version is ``attention_inf.run``)."""
    gated = ar.gated_rnn_init(jax.random.PRNGKey(0), m, m)
    p2 = ar.attention_rnn_init(jax.random.PRNGKey(0), m, m, k=2)
    pinf = ar.attention_rnn_init(jax.random.PRNGKey(0), m, m, k=None)
    rows, per_step = [], {}
    for T in lengths:
        xs = jax.random.normal(jax.random.PRNGKey(T), (batch, T, m)) / jnp.sqrt(m)
        ours = lambda p, x: ar.attention_rnn(p, x, k=2)
        obvious = lambda p, x: obvious_attention_k(p, x, 2)
        fwd = interleaved_seconds({"obvious": batched(obvious), "ours": batched(ours)}, p2, xs)
        both = interleaved_seconds({"obvious": fwd_bwd(obvious), "ours": fwd_bwd(ours)}, p2, xs)
        steps = interleaved_seconds({
            "gated": batched(lambda p, x: ar.gated_rnn(p[0], x)),
            "inf": batched(lambda p, x: attention_inf.online(p[1], x))}, (gated, pinf), xs)
        inf_both = median_seconds(fwd_bwd(attention_inf.online), pinf, xs)
        per_step[T] = 1 / steps["inf"][1]
        rows.append((T, fmt_ms(fwd["ours"][0]), fmt_ms(fwd["obvious"][0]),
                     f"{fwd['ours'][1]:.2f}x", fmt_ms(both["ours"][0]),
                     fmt_ms(both["obvious"][0]), f"{both['ours'][1]:.2f}x",
                     fmt_ms(steps["inf"][0]), fmt_ms(inf_both),
                     f"{1e6 * steps['inf'][0] / T:.1f}", f"{1e6 * steps['gated'][0] / T:.1f}",
                     f"{per_step[T]:.2f}"))
        print(rows[-1], flush=True)
    header = ("T", "(2) fwd ms", "(2) obvious fwd ms", "speed-up", "(2) fwd+bwd ms",
              "(2) obvious fwd+bwd ms", "speed-up", "(∞) fwd ms", "(∞) fwd+bwd ms",
              "(∞) µs/step", "gated µs/step", "(∞) / gated")
    return markdown_table(header, rows), per_step


def attention_backward_table(T, batch=16, m=64):
    """The two backward passes of ``attention_rnn``, timed in turn (batch 16, m = d = 64)."""
    rows = []
    for k in (2, None):
        params = ar.attention_rnn_init(jax.random.PRNGKey(0), m, m, k=k)
        xs = jax.random.normal(jax.random.PRNGKey(T), (batch, T, m)) / jnp.sqrt(m)
        fns = {b: fwd_bwd(lambda p, x, b=b: ar.attention_rnn(p, x, k=k, backward=b))
               for b in ("autodiff", "fused")}
        for a, b in zip(*(jax.tree.leaves(f(params, xs)) for f in fns.values())):
            np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)
        t = interleaved_seconds(fns, params, xs)
        temp = {b: compiled_temp_bytes(f, params, xs) for b, f in fns.items()}
        rows.append(("∞" if k is None else k, fmt_ms(t["autodiff"][0]), fmt_ms(t["fused"][0]),
                     f"{t['fused'][1]:.2f}x", fmt_mib(temp["autodiff"]), fmt_mib(temp["fused"])))
    return markdown_table(("k", "autodiff fwd+bwd ms", "fused fwd+bwd ms", "fused speed-up",
                           "autodiff XLA temp MiB", "fused XLA temp MiB"), rows)


def bounds_table(T, batch=16, sizes=(64, 256)):
    """The bounded AttentionRNN (``attnrnn.train.BOUNDED``: spectral norms of V_h, Q_h, K_h by SVD
    and V_x's column norms, once per call) against the homework's model, timed in turn."""
    rows, ratios = [], []
    for m in sizes:
        for k in (2, None):
            params = ar.attention_rnn_init(jax.random.PRNGKey(0), m, m, k=k)
            xs = jax.random.normal(jax.random.PRNGKey(T), (batch, T, m)) / jnp.sqrt(m)
            fns = {name: (lambda p, x, o=options: ar.attention_rnn(p, x, k=k, options=o))
                   for name, options in (("raw", None), ("bounded", training.BOUNDED))}
            fwd = interleaved_seconds({n: batched(f) for n, f in fns.items()}, params, xs)
            both = interleaved_seconds({n: fwd_bwd(f) for n, f in fns.items()}, params, xs)
            cost = 1 / fwd["bounded"][1]
            ratios.append(cost)
            rows.append((m, "∞" if k is None else k, fmt_ms(fwd["raw"][0]),
                         fmt_ms(fwd["bounded"][0]), f"{cost:.3f}x",
                         f"{1e6 * (fwd['bounded'][0] - fwd['raw'][0]) / T:.2f}",
                         fmt_ms(both["raw"][0]), fmt_ms(both["bounded"][0]),
                         f"{1 / both['bounded'][1]:.3f}x"))
            print(rows[-1], flush=True)
    header = ("m = n = d", "k", "raw fwd ms", "bounded fwd ms", "bounded / raw",
              "extra µs per step", "raw fwd+bwd ms", "bounded fwd+bwd ms", "bounded / raw")
    return markdown_table(header, rows), max(ratios)


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
    # Per example (what vmap of a per-example gradient gives), both ways; and summed over the
    # batch, where jax.vjp of the batched convolution sums inside one convolution.
    closed = jax.jit(jax.vmap(lambda x, g: ar.conv_weight_grad(x, g, 3, padding=1)))
    per_example = jax.jit(jax.vmap(
        lambda x, g: jax.vjp(lambda w: ar.conv(x, w, padding=1), w)[1](g)[0]))
    closed_sum = jax.jit(lambda x, g: closed(x, g).sum(0))
    autodiff = jax.jit(lambda x, g: jax.vjp(lambda w: batched_conv(x, w), w)[1](g)[0])
    np.testing.assert_allclose(closed(x, g), per_example(x, g), rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(closed_sum(x, g), autodiff(x, g), rtol=1e-3, atol=1e-2)
    # Each pair timed in turn, round after round (single timings here drift by 20% and more).
    pairs = (("forward: attnrnn.conv under vmap", lambda: ours(x),
              "batched lax.conv", lambda: direct(x)),
             ("dW per example: conv_weight_grad under vmap", lambda: closed(x, g),
              "jax.vjp of attnrnn.conv under vmap", lambda: per_example(x, g)),
             ("dW summed over the batch: the same, then summed", lambda: closed_sum(x, g),
              "jax.vjp of the batched lax.conv", lambda: autodiff(x, g)))
    rows, speedups = [], []
    for name, fn, baseline, baseline_fn in pairs:
        (ours_s, _), (base_s, ratio) = interleaved_seconds(
            {name: fn, baseline: baseline_fn}, rounds=5).values()
        speedups.append(1 / ratio)
        rows.append((name, fmt_ms(ours_s), baseline, fmt_ms(base_s), f"{1 / ratio:.2f}x"))
    return (markdown_table(("attnrnn", "ms", "baseline", "baseline ms", "speed-up"), rows),
            speedups[1])


def obvious_train_step(optimizer, task, batch_size):
    """A jitted step as one writes it first: obvious scan, batch made by a separate jitted
    call each step, host loop over steps."""
    def loss(params, xs, labels, mask):
        def one(x, m):
            W_c, W_h, W_x = params.cell
            def step(h, inputs):
                x_t, keep = inputs
                x_t = jnp.append(x_t, 1.0)  # the training model's bias input
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
    model = models.model_for("gated", task, hidden)
    params = model.init(jax.random.PRNGKey(0))
    step, sample = obvious_train_step(optimizer, task, batch)

    def run_obvious():
        p, s = params, optimizer.init(params)
        key = jax.random.PRNGKey(0)
        for _ in range(steps):
            key, sub = jax.random.split(key)
            p, s, value = step(p, s, sample(sub))
        return value

    chunk = training.make_train_chunk(optimizer, task, model, batch_size=batch,
                                      steps_per_chunk=20)

    def run_library():
        # The chunk donates its input state, so every run starts from a fresh copy.
        fresh = jax.tree.map(jnp.copy, params)
        state = training.init_train_state(jax.random.PRNGKey(1), fresh, optimizer)
        for _ in range(steps // 20):
            state, metrics = chunk(state)
        return metrics["loss"]

    t = interleaved_seconds({"obvious": run_obvious, "library": run_library}, rounds=5,
                            min_time=0)
    t_obvious, t_library = t["obvious"][0], t["library"][0]
    rows = [("obvious jitted step (host loop, data per step)", f"{steps * batch / t_obvious:,.0f}"),
            ("attnrnn make_train_chunk (20 steps per call, data on device)",
             f"{steps * batch / t_library:,.0f}")]
    torch_rate = torch_course_loop(steps, batch, hidden)
    if torch_rate:
        rows.append(("PyTorch nn.LSTM course loop", f"{torch_rate:,.0f}"))
    rows.append(("attnrnn / obvious", f"{t['library'][1]:.2f}x"))
    if torch_rate:
        rows.append(("attnrnn / PyTorch", f"{steps * batch / t_library / torch_rate:.2f}x"))
    ratios = {"obvious": t["library"][1],
              "torch": steps * batch / t_library / torch_rate if torch_rate else None}
    return markdown_table(("training step, gated RNN hidden 32, batch 32, moderate",
                           "sequences/s"), rows), ratios


def mnist1d_table(steps=100):
    """A training step at MNIST-1D's paper size (bidirectional, hidden 6, readout over every
    state, batch 100 of 40 steps): ``attnrnn.gru`` and the gated RNN against Flax's own
    ``nnx.GRUCell`` network, each in the same chunked loop (``make_train_chunk``). None when
    flax or mnist1d is missing."""
    import importlib.util

    try:
        import flax  # noqa: F401
        task = tasks.make_task("mnist1d")
    except (ImportError, ValueError):
        return None, None
    path = Path(__file__).resolve().parents[1] / "experiments" / "mnist1d" / "run.py"
    spec = importlib.util.spec_from_file_location("mnist1d_experiment", path)
    experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(experiment)
    config = training.TrainConfig(task="mnist1d", model="gru", **experiment.PAPER_SIZE).resolve()
    optimizer = training.make_optimizer("adam", 1e-2, training.NO_CLIP)
    candidates = {"Flax nnx.GRUCell in nnx.Bidirectional(nnx.RNN)":
                  experiment.flax_gru_model(task, config.hidden),
                  "attnrnn gru": config.build_model(task),
                  "attnrnn gated": config.replace(model="gated").build_model(task)}

    def runner(model):
        chunk = training.make_train_chunk(optimizer, task, model, batch_size=100,
                                          steps_per_chunk=steps)
        params = model.init(jax.random.PRNGKey(0))

        def run():
            fresh = jax.tree.map(jnp.copy, params)  # the chunk donates its input state
            state = training.init_train_state(jax.random.PRNGKey(1), fresh, optimizer)
            return chunk(state, task.train)[1]["loss"]
        return run

    t = interleaved_seconds({name: runner(m) for name, m in candidates.items()}, rounds=5,
                            min_time=0)
    rows = [(name, f"{steps * 100 / seconds:,.0f}", f"{ratio:.2f}x")
            for name, (seconds, ratio) in t.items()]
    ratios = {"gru": t["attnrnn gru"][1], "gated": t["attnrnn gated"][1]}
    return markdown_table(("training step, MNIST-1D at the paper's size", "sequences/s",
                           "against Flax"), rows), ratios


def torch_course_loop(steps, batch, hidden):
    """The course's PyTorch loop: nn.LSTM + linear readout, adam, on numpy batches."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    device = _torch_device(torch)
    task = tasks.make_task("temporal-order", level="moderate")
    lstm = torch.nn.LSTM(8, hidden, batch_first=True).to(device)
    readout = torch.nn.Linear(hidden, 4).to(device)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(readout.parameters()), lr=3e-3)
    # The course loop moves each numpy batch to the device inside the step.
    batches = [tuple(np.array(a) for a in task.sample(jax.random.PRNGKey(i), batch)[:2])
               for i in range(steps)]

    def run():
        for xs, labels in batches:
            xs, labels = (torch.from_numpy(a).to(device) for a in (xs, labels))
            opt.zero_grad()
            out, _ = lstm(xs)
            loss = torch.nn.functional.cross_entropy(readout(out[:, -1]), labels.long())
            loss.backward()
            opt.step()
        _torch_sync(torch)

    return steps * batch / _torch_time(run, repeats=3)


def torch_gated_table(batch, T, n, m):
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed: its rows were skipped."
    rows = []
    device = _torch_device(torch)
    xs = torch.randn(batch, T, n, device=device)
    for name, module in (("nn.GRU", torch.nn.GRU(n, m, batch_first=True)),
                         ("nn.LSTM", torch.nn.LSTM(n, m, batch_first=True))):
        module = module.to(device)

        def fwd():
            with torch.no_grad():
                module(xs)
            _torch_sync(torch)

        def fwd_bwd():
            module(xs)[0].pow(2).sum().backward()
            _torch_sync(torch)

        rows.append((name, fmt_ms(_torch_time(fwd)), fmt_ms(_torch_time(fwd_bwd))))
    W_c, W_h, W_x = (torch.randn(m, k, device=device) / k**0.5 for k in (n, m, n))

    def eager_cell():
        h = torch.zeros(batch, m, device=device)
        for t in range(T):
            c = torch.sigmoid(xs[:, t] @ W_c.T + h @ W_h.T)
            h = c * h + (1 - c) * (xs[:, t] @ W_x.T)
        _torch_sync(torch)

    rows.append(("eager loop of the gated cell (forward)", fmt_ms(_torch_time(eager_cell)), "-"))
    return markdown_table(("PyTorch", "fwd ms", "fwd+bwd ms"), rows)


def _torch_device(torch):
    """PyTorch runs where JAX runs: the GPU when JAX has one (with TF32 off, as JAX's
    matmuls run at full float32 precision in this benchmark), else the CPU."""
    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return torch.device("cuda")
    return torch.device("cpu")


def _torch_sync(torch):
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


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
    parser.add_argument("--only", choices=["bounds", "cells"], default=None,
                        help="measure one table alone and print it (nothing is written)")
    args = parser.parse_args()
    lengths = (64, 128) if args.quick else (256, 1024, 4096)
    if args.only == "bounds":
        table, worst = bounds_table(lengths[1])
        print(f"{table}\n\nworst bounded / raw forward: {worst:.3f}x ({machine()})")
        return
    if args.only == "cells":
        table = cells.run(cells.GRID[:2] if args.quick else cells.GRID)[0]
        print(f"{table}\n\n{cells.by_batch()}\n\n({machine()})")
        return
    if jax.default_backend() == "gpu":
        # Full float32 matmuls (no TF32), the same arithmetic as on the CPU and in PyTorch.
        jax.config.update("jax_default_matmul_precision", "highest")
    sections = [f"# Benchmarks\n\nMeasured by `make bench` (`benchmarks/run.py`) in one process "
                f"on: {machine()}. Float32 (full precision matmuls). Times are medians of "
                "repeated runs after a compile-and-warm-up call; where a table compares "
                "implementations, they were timed in turn, round after round, and a speed-up "
                "is the median of the per-round ratios (a shared machine's slow spells hit "
                "every row alike). `docs/performance.md` explains the numbers."]

    def section(title, body):
        print(f"\n## {title}\n\n{body}", flush=True)
        sections.append(f"## {title}\n\n{body}")

    peak = matmul_peak(1024 if args.quick else 2048)
    section("Machine", f"Large float32 matmul: {peak:.0f} GFLOP/s (the 'peak' below).")
    big = (64, 64 if args.quick else 512, 256, 256)
    table, (big_fwd, big_both) = gated_table(*big, peak)
    section(f"Gated RNN, batch {big[0]}, T = {big[1]}, n = m = {big[3]}", table)
    section("PyTorch at the same size", torch_gated_table(*big))
    small = (1, 200 if args.quick else 1000, 64, 64)
    table, (small_fwd, small_both) = gated_table(*small, peak)
    section(f"Gated RNN, batch 1, T = {small[1]}, n = m = 64", table)
    table, per_step = attention_table(lengths)
    section("AttentionRNN(2) and (∞), batch 16, n = m = d = 64 (gated RNN per step alongside)",
            table)
    table, online = attention_inf.run(lengths, backward_limit=256 if args.quick else 1024)
    section("AttentionRNN(∞) against the quadratic version, with memory", table)
    section(f"AttentionRNN backward passes, batch 16, m = d = 64, T = {lengths[1]}",
            attention_backward_table(lengths[1]))
    table, bounded_cost = bounds_table(lengths[1])
    section(f"Bounded AttentionRNN against the homework's model, batch 16, T = {lengths[1]}",
            table)
    table, conv_dw = conv_table()
    section("Convolution, a small-CNN layer (batch 64, 32 -> 64 channels, 32x32, 3x3)", table)
    table, training = training_table(steps=40 if args.quick else 200)
    section("Training step of the main job", table)

    table, same_cell, same_program = cells.run(cells.GRID[:2] if args.quick else cells.GRID)
    section("The same cell in three libraries (attnrnn, Flax, Equinox)", cells.ABOUT + table)
    section("The gate cells' gradient by batch, at MNIST-1D's step (T 40, n 1, m 6)",
            cells.by_batch(batches=cells.BATCHES[:3] if args.quick else cells.BATCHES))

    table, mnist1d = mnist1d_table(steps=20 if args.quick else 100)
    if table:
        section("Training step at MNIST-1D's paper size", table)

    fused = "attnrnn fused (unroll 1)"
    longest = lengths[-1]
    targets = [
        (f"gated, batch {big[0]}, T {big[1]}, n = m = {big[3]}: forward ≥ 1.25x the obvious scan",
         big_fwd[fused][1], 1.25),
        ("same size: forward+backward ≥ 1.5x", big_both[fused][1], 1.5),
        (f"gated, batch 1, T {small[1]}, m 64: forward ≥ 2x", small_fwd[fused][1], 2.0),
        ("same: forward+backward ≥ 1.5x", small_both[fused][1], 1.5),
        (f"AttentionRNN(∞), T {longest}: forward ≥ 20x the quadratic version",
         online[longest]["speed-up"], 20.0),
        ("AttentionRNN(∞) per step within 2x of the gated RNN (worst over T; ≤ 2)",
         max(per_step.values()), None),
        ("training step ≥ 1.3x the obvious jitted step", training["obvious"], 1.3),
        ("conv_weight_grad under vmap ≥ 1.0x jax.vjp under the same vmap (per-example dW)",
         conv_dw, 1.0),
        ("bounded AttentionRNN forward ≤ 1.15x the homework's (worst row; ≤ 1.15)",
         bounded_cost, None),
    ]
    for family, at_least in (("GRU", 1.0), ("LSTM", 1.0), (cells.USER_CELL, 0.95)):
        for i, what in enumerate(("forward", "gradient")):
            worst = min(ratio[i] for (name, *_), peers in same_cell.items() if name == family
                        for ratio in peers.values())
            targets.append((f"{family}: attnrnn {what} ≥ {at_least}x the peers' (worst over "
                            "the grid)", worst, at_least))
    if training.get("torch"):
        targets.append(("training step ≥ 2x the PyTorch nn.LSTM course loop",
                        training["torch"], 2.0))
    # A target with no "at least" is an upper limit, written at the end of its text.
    rows = [(what, f"{value:.2f}x" if at_least else f"{value:.2f}",
             "yes" if (value >= at_least if at_least else
                       value <= float(what.rstrip(")").rsplit("≤ ", 1)[1])) else "no")
            for what, value, at_least in targets]
    rows.append(("AttentionRNN(∞) forward memory does not grow with T",
                 f"carry {online[longest]['carry']} floats per sequence at every T", "yes"))
    for i, what in enumerate(("forward", "gradient")):
        same = all(pair[i] for pair in same_program.values())
        rows.append((f"{cells.USER_CELL}: `attnrnn.run` adds nothing to the {what} (the same "
                     "compiled program as the plain lax.scan at every point)",
                     "same program" if same else "another program", "yes" if same else "no"))
    section("Against the targets, from the tables above",
            markdown_table(("target", "measured in this run", "met?"), rows))
    Path(args.out).write_text("\n\n".join(sections) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
