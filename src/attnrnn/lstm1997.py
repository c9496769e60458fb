r"""The LSTM of Hochreiter & Schmidhuber (1997) as the paper ran it: no forget gate.

Memory-cell blocks ``j = 1..B`` of ``C`` cells share an input gate and an output gate. Every
non-input unit — cell inputs, input gates, output gates — reads the current input ``x[t]``
and every hidden unit's previous activation ``y[t-1] = [y^c; y^in; y^out]`` (a fully connected
hidden layer), plus a bias:

$$
\begin{aligned}
y^{in}_j[t] &= \sigma(W_{in}[j]\, u[t] + b_{in}[j]), & u[t] &= [x[t];\ y[t-1]], \\
y^{out}_j[t] &= \sigma(W_{out}[j]\, u[t] + b_{out}[j]), \\
s_c[t] &= s_c[t-1] + y^{in}_j[t]\, g(W_c[c]\, u[t] + b_c[c]), &
  g(z) &= 4\sigma(z) - 2 \in [-2, 2], \\
y^c[t] &= y^{out}_j[t]\, h(s_c[t]), & h(z) &= 2\sigma(z) - 1 \in [-1, 1],
\end{aligned}
$$

for each cell ``c`` of block ``j``; ``s[0] = 0``, ``y[0] = 0``. The cell state is a constant
error carousel (``∂s[t]/∂s[t-1] = 1``). The paper's output units read the cells only; they
are a readout, not part of this recurrence. Experiment 6a: 8 inputs, 2 blocks of 2 cells
(136 weights here, 156 with the 4 sigmoid outputs); the adding problem: 2 inputs (88, 93 with
its output).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from attnrnn import _scan
from attnrnn._checks import (as_bool, as_int, check_floating, check_rank, check_shape,
                             initialiser)

__all__ = ["LSTM1997Params", "lstm1997_init", "lstm1997", "lstm1997_cell",
           "lstm1997_initial_state"]


class LSTM1997Params(NamedTuple):
    """``W_c (B·C, n + H)``, ``b_c (B·C,)`` cell inputs; ``W_in``, ``W_out (B, n + H)``,
    ``b_in``, ``b_out (B,)`` gates; ``H = B·C + 2B`` hidden units, ordered
    ``[cells; input gates; output gates]`` in ``u = [x; y]``."""

    W_c: jax.Array
    b_c: jax.Array
    W_in: jax.Array
    b_in: jax.Array
    W_out: jax.Array
    b_out: jax.Array


@initialiser
def lstm1997_init(key, input_size, *, blocks=2, cells=2, input_gate_bias=(-2.0, -4.0),
                  scale=0.1, dtype=jnp.float32) -> LSTM1997Params:
    """The paper's initialisation: every weight and bias ``U[-scale, scale]`` (0.1), except
    the input-gate biases, which are ``input_gate_bias`` (one per block: -2, -4 for
    experiment 6a; -3, -6 for the adding problem), so later blocks open later.

    Args:
      key: a ``jax.random`` key.
      input_size: ``n``.
      blocks: ``B``, memory-cell blocks.
      cells: ``C``, cells per block.
      input_gate_bias: ``B`` numbers.
      scale: the half-width of the uniform initialisation (the paper's 0.1; on the adding
        problem at T = 500 and 1000 a larger one shortens the plateau before the network
        learns: docs/results.md).
      dtype: a floating dtype.

    Returns:
      [`LSTM1997Params`][attnrnn.lstm1997.LSTM1997Params].
    """
    n = as_int("input_size", input_size, minimum=1)
    B = as_int("blocks", blocks, minimum=1)
    C = as_int("cells", cells, minimum=1)
    if len(tuple(input_gate_bias)) != B:
        raise ValueError(f"input_gate_bias must have one number per block ({B}), got "
                         f"{input_gate_bias!r}")
    fan_in = n + B * C + 2 * B
    shapes = ((B * C, fan_in), (B * C,), (B, fan_in), (B,), (B, fan_in), (B,))
    keys = jax.random.split(key, len(shapes))
    params = LSTM1997Params(*(jax.random.uniform(k, s, dtype, -scale, scale)
                              for k, s in zip(keys, shapes)))
    return params._replace(b_in=jnp.asarray(input_gate_bias, dtype))


def _check_params(params) -> tuple[int, int, int]:
    """Returns ``(n, blocks, cells)``."""
    if not isinstance(params, tuple) or len(params) != 6:
        raise TypeError("params must be LSTM1997Params(W_c, b_c, W_in, b_in, W_out, b_out), "
                        f"got {type(params).__name__}")
    B, fan_in = check_rank("params.W_in", params.W_in, 2, "(B, n + H)")
    cells_total = check_rank("params.W_c", params.W_c, 2, "(B·C, n + H)")[0]
    if cells_total % B:
        raise ValueError(f"params.W_c has {cells_total} cells, not a multiple of the {B} "
                         "blocks of params.W_in")
    n = fan_in - cells_total - 2 * B
    if n < 1:
        raise ValueError(f"params.W_in's {fan_in} columns leave no input (H = {cells_total} "
                         f"cells + {2 * B} gates)")
    for name, shape in (("W_c", (cells_total, fan_in)), ("b_c", (cells_total,)),
                        ("b_in", (B,)), ("W_out", (B, fan_in)), ("b_out", (B,))):
        check_shape(f"params.{name}", getattr(params, name), shape)
    for name, w in zip(LSTM1997Params._fields, params):
        check_floating(f"params.{name}", w)
    return n, B, cells_total // B


def lstm1997(params: LSTM1997Params, xs, *, initial_state=None, mask=None, reverse=False,
             unroll=1, remat_chunk=None, backward="autodiff", return_state=False,
             truncated=False, cell_input=None, cell_output=None):
    """Runs the 1997 LSTM over ``xs (T, n)``.

    Args:
      params: [`LSTM1997Params`][attnrnn.lstm1997.LSTM1997Params].
      xs: ``(T, n)``.
      initial_state: ``(s, y)``: the cell states ``s (B·C,)`` and every unit's output
        ``y (B·C + 2B,)`` (cells, input gates, output gates) before the first step; default
        [`lstm1997_initial_state`][attnrnn.lstm1997.lstm1997_initial_state] (zeros).
      mask, reverse, unroll, remat_chunk, backward, return_state: as for
        [`attnrnn.gated_rnn`][attnrnn.gated.gated_rnn], the keywords of every recurrence of
        the library (a skipped step carries every state and repeats the cell outputs;
        ``backward="fused"`` is the time loop's weight-tapped reverse pass).
      truncated: the paper's truncated gradient: no error flows back through the recurrent
        activations ``y[t-1]`` into the net inputs, only along the cell states (the constant
        error carousel). The forward pass is the same.
      cell_input: the cell input squashing ``g`` (default the paper's ``4σ(z) - 2 ∈ [-2, 2]``),
        a function of one array, applied elementwise.
      cell_output: the cell output squashing ``h`` (default the paper's
        ``2σ(s) - 1 ∈ [-1, 1]``).

    Returns:
      the cell outputs ``y^c (T, B·C)``; with ``return_state``, ``(y^c, (s, y))``.
    """
    n, B, C = _check_params(params)
    T = _scan.check_sequence(xs, n)
    loop = _scan.check_loop(T, mask=mask, reverse=reverse, unroll=unroll,
                            remat_chunk=remat_chunk, backward=backward,
                            return_state=return_state)
    truncated = as_bool("truncated", truncated)
    g, h = (_squashing(name, f, default) for name, f, default in (
        ("cell_input", cell_input, _g), ("cell_output", cell_output, _h)))
    dtype, init = _scan.initial_state(
        initial_state, _scan.state_shapes((B * C,), (B * C + 2 * B,)),
        f"(s, y): {B * C} cell states and {B * C + 2 * B} unit outputs", *params, xs)
    final, ys = _scan.run_recurrence(*_recurrence(params, dtype, n, B, C, truncated, g, h),
                                     init, jnp.asarray(xs, dtype), **loop.run_options())
    return _scan.outputs(loop, ys, final)


def lstm1997_cell(params: LSTM1997Params, carry, x):
    """One step of the paper's network with its own squashings, ``((s, y), x[t]) -> ((s, y),
    y^c[t])``: a cell of [`attnrnn.run`][attnrnn.loop.run] (its ``skip_output`` repeats the
    cell outputs), or of any loop of your own."""
    n, B, C = _check_params(params)
    for i, (part, size) in enumerate(zip(carry, (B * C, B * C + 2 * B))):
        check_shape(f"carry[{i}]", part, (size,), "(s, y): the cell states and unit outputs")
    dtype = jnp.result_type(*params, *carry, x)
    return _scan.recurrence_step(*_recurrence(params, dtype, n, B, C, False, _g, _h),
                                 tuple(jnp.asarray(a, dtype) for a in carry),
                                 jnp.asarray(x, dtype))


lstm1997_cell.skip_output = lambda carry: carry[1][: carry[0].shape[0]]  # the cell outputs


def _recurrence(params, dtype, n, B, C, truncated, g, h):
    """``(Recurrence, W_y (1, H, H), inputs)`` of the time loop."""
    W_c, b_c, W_in, b_in, W_out, b_out = (jnp.asarray(w, dtype) for w in params)
    W = jnp.concatenate([W_c, W_in, W_out])
    b = jnp.concatenate([b_c, b_in, b_out])
    read = ((lambda carry, z: (jax.lax.stop_gradient(carry[1])[None], None)) if truncated else
            (lambda carry, z: (carry[1][None], None)))
    recurrence = _scan.Recurrence(
        # The input part of every unit's net input, for all steps in one product.
        project_inputs=lambda inputs, xs: xs @ inputs[0].T + inputs[1][None, :],
        read=read, update=partial(_update, B, C, g, h), skip_output=lstm1997_cell.skip_output)
    return recurrence, W[None, :, n:], (W[:, :n], b)


def lstm1997_initial_state(params: LSTM1997Params, dtype=None):
    """The zero state ``(s, y)``: ``B·C`` cell states and ``B·C + 2B`` unit outputs."""
    _, B, C = _check_params(params)
    dtype = dtype or jnp.result_type(*params)
    return jnp.zeros((B * C,), dtype), jnp.zeros((B * C + 2 * B,), dtype)


def _g(z):
    """The cell input squashing, ``4σ(z) - 2 ∈ [-2, 2]``."""
    return 4 * jax.nn.sigmoid(z) - 2


def _h(s):
    """The cell output squashing, ``2σ(s) - 1 ∈ [-1, 1]``."""
    return 2 * jax.nn.sigmoid(s) - 1


def _squashing(name, function, default):
    if function is None:
        return default
    if not callable(function):
        raise TypeError(f"{name} must be a function of one array (a squashing), got "
                        f"{type(function).__name__}")
    return function


def _update(B, C, g, h, carry, z, context, WP):
    """One step given the recurrent part of the net inputs ``WP[0] = W_y y[t-1]``, with the
    squashings ``g`` (cell input) and ``h`` (cell output)."""
    s, _ = carry
    net = z + WP[0]
    y_in = jax.nn.sigmoid(net[B * C : B * C + B])
    y_out = jax.nn.sigmoid(net[B * C + B :])
    s = s + jnp.repeat(y_in, C) * g(net[: B * C])
    y_c = jnp.repeat(y_out, C) * h(s)
    return (s, jnp.concatenate([y_c, y_in, y_out])), y_c
