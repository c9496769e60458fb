"""The same cell in three libraries: attnrnn's GRU and LSTM against Flax's and Equinox's own
modules, and a user's cell through ``attnrnn.run`` against the same cell in a plain
``lax.scan`` — one harness, every candidate timed in turn in one process.

Forward: the sum of every state; gradient: of the sum of their squares, with respect to the
weights. A batch is ``jax.vmap`` over examples (attnrnn, Equinox, the plain scan) or Flax's own
batched ``nnx.RNN``. Speed is a candidate's time over attnrnn's (above 1: attnrnn faster).

    .venv/bin/python benchmarks/run.py --only cells
"""

from __future__ import annotations

import re
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

import attnrnn as ar
from common import interleaved_seconds

ABOUT = ("Each library's own GRU and LSTM (Flax's `nnx.RNN` over `nnx.GRUCell` / "
         "`nnx.OptimizedLSTMCell`, natively batched; Equinox's `GRUCell` / `LSTMCell` stepped "
         "by `lax.scan` under `vmap`; attnrnn's `gru` / `lstm` with their defaults under "
         "`vmap`), and a user's Elman cell through `attnrnn.run` against the same cell in a "
         "plain `lax.scan`. Forward: the sum of every state; gradient: of the sum of their "
         "squares, with respect to the weights. The last column is each peer's time over "
         "attnrnn's (above 1: attnrnn is faster). The rows marked `backward=\"autodiff\"` are "
         "attnrnn's same function with JAX's own reverse pass in place of the default "
         "hand-written one, for comparison (they are not peers: no target counts them).\n\n")
USER_CELL = "a user's cell (Elman)"
AUTODIFF = 'backward="autodiff"'
GRID = ((100, 40, 1, 6), (32, 100, 16, 32), (64, 200, 64, 128), (16, 500, 64, 256),
        (1, 1000, 64, 64))


def _flax(cell_type, n, m, carry):
    """Flax's ``nnx.RNN`` over its own cell: ``(params, run(params, xs))``."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.rnn = nnx.RNN(cell_type(n, m, rngs=rngs), rngs=False)

    graph, params, rest = nnx.split(Net(nnx.Rngs(0)), nnx.Param, ...)

    def run(params, xs):
        return nnx.merge(graph, params, rest).rnn(xs, initial_carry=carry(xs.shape[0]))

    return params, run


def _equinox(cell_type, n, m, carry, output):
    """Equinox's cell stepped by ``lax.scan``, batched by ``vmap``."""
    import equinox as eqx

    params, static = eqx.partition(cell_type(n, m, key=jax.random.PRNGKey(0)), eqx.is_array)

    def one(params, xs):
        cell = eqx.combine(params, static)
        step = lambda c, x: ((new := cell(x, c)), output(new))  # noqa: E731
        return lax.scan(step, carry(), xs)[1]

    return params, lambda params, xs: jax.vmap(lambda x: one(params, x))(xs)


def _elman(params, h, x):
    W, U, b = params
    h = jnp.tanh(W @ x + U @ h + b)
    return h, h


def candidates(n, m):
    """``{family: {name: (params, run(params, xs) -> states (B, T, m))}}``."""
    import equinox as eqx
    from flax import nnx

    zeros = lambda batch: jnp.zeros((batch, m))  # noqa: E731
    key = jax.random.PRNGKey(0)
    gru = ar.gru_init(key, n, m)
    lstm = ar.lstm_init(key, n, m)
    keys = jax.random.split(key, 3)
    elman = (jax.random.normal(keys[0], (m, n)) / n**0.5,
             jax.random.normal(keys[1], (m, m)) / m**0.5, jnp.zeros(m))
    batch = lambda f: lambda p, xs: jax.vmap(lambda x: f(p, x))(xs)  # noqa: E731
    return {
        "GRU": {
            "attnrnn.gru": (gru, batch(ar.gru)),
            f"attnrnn.gru, {AUTODIFF}": (gru, batch(partial(ar.gru, backward="autodiff"))),
            "Flax nnx.GRUCell": _flax(nnx.GRUCell, n, m, zeros),
            "Equinox GRUCell": _equinox(eqx.nn.GRUCell, n, m, lambda: jnp.zeros(m),
                                        lambda h: h),
        },
        "LSTM": {
            "attnrnn.lstm": (lstm, batch(ar.lstm)),
            f"attnrnn.lstm, {AUTODIFF}": (lstm, batch(partial(ar.lstm, backward="autodiff"))),
            "Flax nnx.OptimizedLSTMCell": _flax(nnx.OptimizedLSTMCell, n, m,
                                                lambda b: (zeros(b), zeros(b))),
            "Equinox LSTMCell": _equinox(eqx.nn.LSTMCell, n, m,
                                         lambda: (jnp.zeros(m), jnp.zeros(m)), lambda c: c[0]),
        },
        USER_CELL: {
            "attnrnn.run": (elman, batch(lambda p, x: ar.run(_elman, p, x,
                                                             initial_state=jnp.zeros(m)))),
            "plain lax.scan": (elman, batch(lambda p, x: lax.scan(
                lambda h, x_t: _elman(p, h, x_t), jnp.zeros(m), x)[1])),
        },
    }


def _jitted(family):
    """``{name: (params, jitted forward, jitted gradient)}``."""
    return {name: (params, jax.jit(lambda p, xs, run=run: jnp.sum(run(p, xs))),
                   jax.jit(jax.grad(lambda p, xs, run=run: jnp.sum(run(p, xs) ** 2))))
            for name, (params, run) in family.items()}


def _timed(jitted, xs, rounds):
    """``{name: (forward s, gradient s, forward speed, gradient speed)}``, speeds against
    the family's first (attnrnn) row: the row's time over attnrnn's."""
    forward = {name: lambda xs, f=f, p=p: f(p, xs) for name, (p, f, _) in jitted.items()}
    gradient = {name: lambda xs, g=g, p=p: g(p, xs) for name, (p, _, g) in jitted.items()}
    fwd = interleaved_seconds(forward, xs, rounds=rounds)
    grad = interleaved_seconds(gradient, xs, rounds=rounds)
    return {name: (fwd[name][0], grad[name][0], 1 / fwd[name][1], 1 / grad[name][1])
            for name in jitted}


def _program(jitted_fn, *args) -> str:
    """What XLA runs for ``jitted_fn(*args)``: the optimised HLO without the source
    locations and names that tell two traces of the same computation apart."""
    lines = jitted_fn.lower(*args).compile().as_text().splitlines()
    # The source tables (FileNames, ..., StackFrames): headings, then numbered rows.
    text = "\n".join(line for line in lines if not re.match(
        r"\d|FileNames|FunctionNames|FileLocations|StackFrames", line))
    text = re.sub(r", metadata=\{[^}]*\}|, stack_frame_id=\d+", "", text)
    return re.sub(r"%[\w.\-]+", "%", text)


def same_program(jitted, xs) -> tuple[bool, bool]:
    """Whether every member of ``jitted`` compiles to one program, forward and gradient."""
    return tuple(len({_program(fns[i], fns[0], xs) for fns in jitted.values()}) == 1
                 for i in (1, 2))


def run(grid=GRID, rounds=7):
    """The markdown table, ``{(family, B, T, n, m): {peer: (fwd ratio, grad ratio)}}``
    (ratio: the peer's time over attnrnn's), and ``{(B, T, n, m): (forward, gradient)}``:
    whether the user's cell through ``attnrnn.run`` compiles to the very program of the plain
    ``lax.scan`` (then a ratio away from 1 is the machine's noise, not the loop's cost)."""
    lines = ["| B, T, n, m | cell | implementation | forward µs | gradient µs | attnrnn's "
             "speed: forward / gradient |", "|---|---|---|---|---|---|"]
    ratios, identical = {}, {}
    for B, T, n, m in grid:
        xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, n))
        for family, members in candidates(n, m).items():
            jitted = _jitted(members)
            times = _timed(jitted, xs, rounds)
            if family == USER_CELL:
                identical[B, T, n, m] = same_program(jitted, xs)
            ours = next(iter(members))
            for name, (fwd, grad, fwd_ratio, grad_ratio) in times.items():
                speed = "" if name == ours else f"{fwd_ratio:.2f}x / {grad_ratio:.2f}x"
                if speed and family == USER_CELL:
                    speed += " ({} / {})".format(*("same program" if same else "other program"
                                                   for same in identical[B, T, n, m]))
                lines.append(f"| {B}, {T}, {n}, {m} | {family} | {name} | {fwd * 1e6:,.0f} | "
                             f"{grad * 1e6:,.0f} | {speed} |")
                if name != ours and not name.endswith(AUTODIFF):
                    ratios.setdefault((family, B, T, n, m), {})[name] = (fwd_ratio, grad_ratio)
    return "\n".join(lines), ratios, identical


BATCHES = (1, 8, 32, 100, 256)


def by_batch(T=40, n=1, m=6, batches=BATCHES, rounds=7):
    """The gate cells' gradient by batch size at MNIST-1D's step (T 40, n 1, m 6): the default
    hand-written reverse pass against ``backward="autodiff"`` and Flax's own cell (gradient
    µs). Under ``jax.grad`` of a vmapped loss, autodiff adds the batch's summed outer product
    to ``∂ℓ/∂W_h`` in its loop; a ``custom_vjp`` under ``vmap`` must return every example's
    ``∂ℓ/∂W_h`` (it cannot know that they will be summed): one small product per example."""
    lines = ["| batch | cell | default µs | autodiff µs | Flax µs | the default's speed against "
             "autodiff / Flax |", "|---|---|---|---|---|---|"]
    for batch in batches:
        xs = jax.random.normal(jax.random.PRNGKey(1), (batch, T, n))
        for family, members in candidates(n, m).items():
            if family == USER_CELL:
                continue
            jitted = _jitted({name: member for name, member in members.items()
                              if not name.startswith("Equinox")})  # default, autodiff, Flax
            grad = {name: lambda xs, g=g, p=p: g(p, xs) for name, (p, _, g) in jitted.items()}
            times = interleaved_seconds(grad, xs, rounds=rounds)
            (ours, _), (autodiff, vs_autodiff), (flax, vs_flax) = times.values()
            lines.append(f"| {batch} | {family} | {ours * 1e6:,.0f} | {autodiff * 1e6:,.0f} | "
                         f"{flax * 1e6:,.0f} | {1 / vs_autodiff:.2f}x / {1 / vs_flax:.2f}x |")
    return "\n".join(lines)
