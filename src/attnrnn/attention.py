r"""AttentionRNN(k) and AttentionRNN(∞) (homework 1.3).

Lag 0 reads the input, lags ``1..k`` read past states; ``h[t] = 0`` for ``t < 1``, and those
zero states take part in the softmax exactly as the equations read:

$$
\begin{aligned}
q_0,\ k_0,\ v_0 &= Q_0\, x[t],\ K_0\, x[t],\ V_0\, x[t], \\
q_i,\ k_i,\ v_i &= Q_i\, h[t-i],\ K_i\, h[t-i],\ V_i\, h[t-i], \qquad i = 1, \dots, k, \\
w_i &= q_i^\top k_i, \qquad
a[t] = \operatorname{softargmax}(w_0, \dots, w_k) \in \mathbb{R}^{k+1}, \qquad
h[t] = \sum_{i=0}^{k} a_i[t]\, v_i.
\end{aligned}
$$

AttentionRNN(∞) ties the weights of every lag (``Q_i = Q, K_i = K, V_i = V`` for ``i ≥ 1``)
and attends over the input term and every past state ``h[1..t-1]``, so ``a[t] ∈ R^t``.
Because a state's score ``w = h^T Q^T K h`` does not depend on ``t``, the softmax over the
past is carried as a running max, a running denominator and a running weighted sum of
values (the online softmax): O(m) state and O(m·d + m²) work per step, exact.

Scores are the homework's unscaled ``q^T k``. Input size ``n``, state size ``m`` and
query/key size ``d`` may all differ.

Heads and recency ([`AttentionOptions`][attnrnn.bounds.AttentionOptions]'s ``heads`` and
``recency``) let the weights over the past tell when a state was made. With ``H`` heads, head
``g`` owns the ``g``-th part of the query, key and value (``q_{i,g}``, ``k_{i,g}``,
``v_{i,g}``), and with recency ``λ_g`` its score of the term of lag ``i`` is lowered by
``λ_g i``:

$$
w_{i,g} = q_{i,g}^\top k_{i,g} - \lambda_g\, i, \qquad
a_g[t] = \operatorname{softargmax}(w_{0,g}, \dots, w_{k,g}), \qquad
h[t]_g = \sum_i a_{i,g}[t]\, v_{i,g}.
$$

For AttentionRNN(∞) every past score only drops by ``λ_g`` from one step to the next, so the
online softmax stays exact: its running maximum is lowered by ``λ_g`` at each step, and the
carry holds one maximum and one denominator per head (``H + 2m`` floats and ``h``).
One head without recency is the homework's model.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from attnrnn import _scan
from attnrnn._attention_kernel import capped_kernel, to_kernel_state
from attnrnn._checks import as_bool, as_int, check_floating, check_rank, check_shape, initialiser
from attnrnn.bounds import RAW, AttentionOptions, _bounded, _check_options, check_heads

__all__ = [
    "AttentionRNNParams",
    "WindowState",
    "OnlineSoftmaxState",
    "attention_rnn_init",
    "attention_rnn_initial_state",
    "attention_rnn_step",
    "attention_rnn_cell",
    "attention_rnn",
    "attention_rnn_jacobian",
    "bounded_params",
]


class AttentionRNNParams(NamedTuple):
    """AttentionRNN weights.

    ``Q_x (d, n)``, ``K_x (d, n)``, ``V_x (m, n)`` act on ``x[t]`` (lag 0). ``Q_h (L, d, m)``,
    ``K_h (L, d, m)``, ``V_h (L, m, m)`` act on past states: ``L = k`` for AttentionRNN(k)
    with ``Q_h[i-1] = Q_i``, or ``L = 1``, the one shared set of AttentionRNN(∞).
    """

    Q_x: jax.Array
    K_x: jax.Array
    V_x: jax.Array
    Q_h: jax.Array
    K_h: jax.Array
    V_h: jax.Array


def _score(q, k, options: AttentionOptions):
    """``w = q^T k`` over the last axis, per head (``(..., H)``; one head: ``(...)``), then the
    optional scale and soft cap."""
    H = options.heads
    qk = q * k
    if 1 < H == qk.shape[-1]:  # one key channel per head: nothing to sum (and no size-1 axis,
        w = qk             # which XLA lays out badly)
    else:
        w = jnp.sum(qk if H == 1 else qk.reshape(*qk.shape[:-1], H, qk.shape[-1] // H), -1)
    if options.score_scale != 1.0:
        w = w * options.score_scale
    if options.score_cap is not None:
        w = options.score_cap * jnp.tanh(w / options.score_cap)
    return w


def _per_head(weights, values, H, op=jnp.multiply):
    """``op(weights_g, values_g)`` head by head: per-head scalars ``weights`` (``(...)`` for one
    head, ``(..., H)``) with the matching parts of ``values (..., m)``."""
    if H == 1:
        return op(values, weights[..., None])
    if H == values.shape[-1]:  # one channel per head: elementwise (no size-1 axis)
        return op(values, weights)
    parts = values.reshape(*values.shape[:-1], H, values.shape[-1] // H)
    return op(parts, weights[..., None]).reshape(values.shape)


def _recency(options: AttentionOptions, dtype):
    """``λ`` per head (``()`` for one head, ``(H,)``), or None where every head has none."""
    if options.recency is None or not any(options.recency):
        return None
    rates = jnp.asarray(options.recency, dtype)
    return rates[0] if options.heads == 1 else rates


def _past(states, options: AttentionOptions):
    """Past states as their lag terms read them."""
    if not options.normalize_states:
        return states
    return states * lax.rsqrt(jnp.mean(states**2, axis=-1, keepdims=True) + 1e-6)


class WindowState(NamedTuple):
    """AttentionRNN(k)'s carry: the last state ``h (m,)`` and ``history (k, m)``,
    most recent first (``history[i-1] = h[t-i]``)."""

    h: jax.Array
    history: jax.Array


class OnlineSoftmaxState(NamedTuple):
    """AttentionRNN(∞)'s carry over the past states ``h[1..t-1]`` (each with score
    ``w_s = (Q h[s])^T (K h[s])``, less ``λ`` per step of its age with recency):

    ``h`` the last state; ``max = max_s w_s`` (``-inf`` before any state);
    ``denominator = Σ_s exp(w_s - max)``; ``numerator = Σ_s exp(w_s - max) V h[s]``.
    With ``H`` heads ``max`` and ``denominator`` are ``(H,)`` (one per head: ``()`` for one)
    and head ``g``'s part of ``numerator`` is its sum. ``max`` is the reference the sums are
    taken against: the running maximum, or the cap ``c ≥ w_s`` where ``backward="fused"``
    ran the capped kernel. Any carry continues either way (the sums are rescaled once, by
    ``e^{max - c}``).
    """

    h: jax.Array
    max: jax.Array
    denominator: jax.Array
    numerator: jax.Array


def _check_k(k):
    return None if k is None else as_int("k", k, minimum=0)


@initialiser
def attention_rnn_init(
    key, input_size, hidden_size, *, k, key_size=None, dtype=jnp.float32
) -> AttentionRNNParams:
    """Initial AttentionRNN weights, LeCun-normal: every matrix ``~ N(0, 1/fan_in)``.

    A matrix acting on ``x`` has ``fan_in = n``, one acting on a state ``fan_in = m``, so
    queries, keys and values start with unit-order entries for unit-order inputs.

    Args:
      key: a ``jax.random`` key.
      input_size: ``n``.
      hidden_size: ``m``.
      k: an int >= 0 for AttentionRNN(k) (``k`` lag matrices of each kind), or None for
        AttentionRNN(∞) (one shared set).
      key_size: ``d``, the query/key size; defaults to ``hidden_size``.
      dtype: a floating dtype.

    Returns:
      [`AttentionRNNParams`][attnrnn.attention.AttentionRNNParams].
    """
    n = as_int("input_size", input_size, minimum=1)
    m = as_int("hidden_size", hidden_size, minimum=1)
    d = m if key_size is None else as_int("key_size", key_size, minimum=1)
    k = _check_k(k)
    lags = 1 if k is None else k
    per_input = jax.nn.initializers.lecun_normal(in_axis=1, out_axis=0)
    per_lag = jax.nn.initializers.lecun_normal(in_axis=2, out_axis=1, batch_axis=0)
    keys = jax.random.split(key, 6)

    def lag_weights(key, shape):
        # lecun_normal cannot size an empty stack, which is what k = 0 has.
        return per_lag(key, shape, dtype) if lags else jnp.zeros(shape, dtype)

    return AttentionRNNParams(
        Q_x=per_input(keys[0], (d, n), dtype),
        K_x=per_input(keys[1], (d, n), dtype),
        V_x=per_input(keys[2], (m, n), dtype),
        Q_h=lag_weights(keys[3], (lags, d, m)),
        K_h=lag_weights(keys[4], (lags, d, m)),
        V_h=lag_weights(keys[5], (lags, m, m)),
    )


def _check_params(params, k) -> tuple[int, int, int]:
    """Validates the weights against each other and against ``k``; returns ``(n, m, d)``."""
    if not isinstance(params, tuple) or len(params) != 6:
        raise TypeError(
            "params must be AttentionRNNParams(Q_x, K_x, V_x, Q_h, K_h, V_h), got "
            f"{type(params).__name__}"
        )
    Q_x, K_x, V_x, Q_h, K_h, V_h = params
    d, n = check_rank("params.Q_x", Q_x, 2, "(d, n)")
    check_shape("params.K_x", K_x, (d, n), "(d, n) like Q_x")
    m = check_rank("params.V_x", V_x, 2, "(m, n)")[0]
    check_shape("params.V_x", V_x, (m, n), "(m, n) with n from Q_x")
    lags = check_rank("params.Q_h", Q_h, 3, "(L, d, m)")[0]
    check_shape("params.Q_h", Q_h, (lags, d, m), "(L, d, m)")
    check_shape("params.K_h", K_h, (lags, d, m), "(L, d, m) like Q_h")
    check_shape("params.V_h", V_h, (lags, m, m), "(L, m, m)")
    for name, w in zip(AttentionRNNParams._fields, params):
        check_floating(f"params.{name}", w)
    expected = 1 if k is None else k
    if lags != expected:
        model = "AttentionRNN(∞), which shares one set of lag weights" if k is None else (
            f"AttentionRNN({k})"
        )
        raise ValueError(
            f"k={k!r} does not match params: {model} needs Q_h, K_h, V_h with {expected} "
            f"lag matrices, but params.Q_h has shape {tuple(Q_h.shape)} ({lags} lags)"
        )
    return n, m, d


def _cast(params, *arrays):
    dtype = jnp.result_type(*params, *arrays)
    return AttentionRNNParams(*(jnp.asarray(w, dtype) for w in params)), dtype


def _lag0(p: AttentionRNNParams, x, options=RAW):
    """Lag-0 score ``w_0 = (Q_0 x)^T (K_0 x)`` and value ``v_0 = V_0 x``; ``x`` may be
    ``(n,)`` or ``(T, n)`` (then all steps at once, in one matrix product each: the
    recurrences' ``project_inputs``)."""
    return _score(x @ p.Q_x.T, x @ p.K_x.T, options), x @ p.V_x.T


def _stack_lags(p: AttentionRNNParams):
    """``[Q_i; K_i; V_i]`` stacked per lag, ``(L, 2d + m, m)``: one product per state gives
    its query, key and value (stacked once, before the time loop)."""
    return jnp.concatenate([p.Q_h, p.K_h, p.V_h], axis=1)


def _split_qkv(qkv, m):
    d = (qkv.shape[-1] - m) // 2
    return qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]


def _lag_scores_values(qkv, m, options: AttentionOptions = RAW):
    """Scores ``w_i = (Q_i h_i)^T (K_i h_i)`` and values ``V_i h_i`` of ``L`` lags, given
    ``qkv = [Q_i; K_i; V_i] h_i (L, 2d + m)`` (the stacked lag weights times the states)."""
    q, k, v = _split_qkv(qkv, m)
    return _score(q, k, options), v


def _attend(w0, v0, w, v, options: AttentionOptions = RAW):
    """``a = softargmax(w_0, w_1 - λ, .., w_L - λL)`` and ``h = Σ_i a_i v_i`` over the input
    and L lags, head by head."""
    scores = jnp.concatenate([w0[None], w])
    rates = _recency(options, scores.dtype)
    if rates is not None:
        lags = jnp.arange(scores.shape[0], dtype=scores.dtype)
        scores = scores - (lags[:, None] * rates[None, :] if rates.ndim else lags * rates)
    a = jax.nn.softmax(scores, axis=0)
    return a, jnp.sum(_per_head(a, jnp.concatenate([v0[None], v]), options.heads), axis=0)


def _window_recurrence(options):
    """AttentionRNN(k): ``a = softargmax(w_0..w_k)``, ``h = Σ_i a_i v_i``, then shift the
    window; the lag weights multiply the window's states. Outputs ``(h[t], a[t])``."""

    def update(state: WindowState, lag0, context, qkv):
        a, h = _attend(*lag0, *_lag_scores_values(qkv, state.h.shape[-1], options), options)
        history = jnp.concatenate([h[None], state.history])[: state.history.shape[0]]
        return WindowState(h, history), (h, a)

    def skip_output(state):
        return state.h, jnp.zeros((state.history.shape[0] + 1, *_heads_shape(options)),
                                  state.h.dtype)

    return _scan.Recurrence(partial(_lag0, options=options),
                            read=lambda state, lag0: (_past(state.history, options), None),
                            update=update, skip_output=skip_output)


def _aged_max(state: OnlineSoftmaxState, options):
    """The running maximum one step older: every past score drops by ``λ`` per step."""
    rates = _recency(options, state.max.dtype)
    return state.max if rates is None else state.max - rates


def _online_mix(state: OnlineSoftmaxState, past_max, w0, v0, H):
    """``h[t]`` of AttentionRNN(∞) by the online softmax: the input term joins the running
    sums of the past (their maximum ``past_max``, aged one step), head by head. Returns
    ``(h, top, normaliser)``. The maxima only shift exponents that cancel between numerator
    and denominator, so they are held constant for differentiation (exact, and no ``-inf``
    in any gradient)."""
    top = lax.stop_gradient(jnp.maximum(past_max, w0))
    past = jnp.exp(past_max - top)
    now = jnp.exp(w0 - top)
    normaliser = now + past * state.denominator
    mixed = _per_head(now, v0, H) + _per_head(past, state.numerator, H)
    return _per_head(normaliser, mixed, H, jnp.divide), top, normaliser


def _online_recurrence(options):
    """AttentionRNN(∞): ``h[t]`` from the running sums (``_online_mix``), then ``h[t]``
    joins the history that steps ``t+1..`` attend over; the one shared set of lag weights
    multiplies ``h[t]``. Outputs ``(h[t], (a_0, w(h[t]), log Z))``, from which the
    attention row can be rebuilt."""

    H = options.heads

    def read(state, lag0):
        past_max = _aged_max(state, options)
        h, top, normaliser = _online_mix(state, past_max, *lag0, H)
        return _past(h[None], options), (h, top, normaliser, past_max)

    def update(state: OnlineSoftmaxState, lag0, context, qkv):
        w0, _ = lag0
        h, top, normaliser, past_max = context
        w_h, v = (a[0] for a in _lag_scores_values(qkv, h.shape[-1], options))
        new_max = lax.stop_gradient(jnp.maximum(past_max, w_h))
        decay, weight = jnp.exp(past_max - new_max), jnp.exp(w_h - new_max)
        new_state = OnlineSoftmaxState(
            h, new_max, state.denominator * decay + weight,
            _per_head(decay, state.numerator, H) + _per_head(weight, v, H))
        row = (jnp.exp(w0 - top) / normaliser, w_h, top + jnp.log(normaliser))
        return new_state, (h, row)

    def skip_output(state):
        zero = jnp.zeros(_heads_shape(options), state.h.dtype)
        return state.h, (zero, zero, zero)

    return _scan.Recurrence(partial(_lag0, options=options), read=read, update=update,
                            skip_output=skip_output)


def _recurrence(k, options):
    return _online_recurrence(options) if k is None else _window_recurrence(options)


def _heads_shape(options: AttentionOptions) -> tuple:
    """The shape of one per-head scalar: ``()`` for one head, ``(H,)``."""
    return () if options.heads == 1 else (options.heads,)


def _initial_state(k, m, dtype, options: AttentionOptions = RAW):
    if k is None:
        per_head = _heads_shape(options)
        return OnlineSoftmaxState(
            jnp.zeros((m,), dtype), jnp.full(per_head, -jnp.inf, dtype),
            jnp.zeros(per_head, dtype), jnp.zeros((m,), dtype),
        )
    return WindowState(jnp.zeros((m,), dtype), jnp.zeros((k, m), dtype))


def _checked_options(options, m, d) -> AttentionOptions:
    options = _check_options(options)
    check_heads(options, m, d)
    return options


def attention_rnn_initial_state(params: AttentionRNNParams, *, k, options=None):
    """The carry before step 1: every past state zero (finite k) or no past at all (∞).

    Args:
      params: [`AttentionRNNParams`][attnrnn.attention.AttentionRNNParams].
      k: an int >= 0, or None for AttentionRNN(∞).
      options: [`AttentionOptions`][attnrnn.bounds.AttentionOptions]; its ``heads`` sizes
        AttentionRNN(∞)'s per-head maxima and denominators.

    Returns:
      [`WindowState`][attnrnn.attention.WindowState] for finite ``k``,
      [`OnlineSoftmaxState`][attnrnn.attention.OnlineSoftmaxState] for ``k=None``.
    """
    k = _check_k(k)
    _, m, d = _check_params(params, k)
    return _initial_state(k, m, jnp.result_type(*params), _checked_options(options, m, d))


def attention_rnn_step(params: AttentionRNNParams, state, x, *, k, options=None):
    """One step, for users who write their own loops.

    Args:
      params: [`AttentionRNNParams`][attnrnn.attention.AttentionRNNParams].
      state: the carry from
        [`attention_rnn_initial_state`][attnrnn.attention.attention_rnn_initial_state] or the
        previous step.
      x: ``x[t] (n,)``.
      k: an int >= 0, or None for AttentionRNN(∞).
      options: [`AttentionOptions`][attnrnn.bounds.AttentionOptions]; None is the homework's
        model.

    Returns:
      ``(state, h[t])``.
    """
    k = _check_k(k)
    n, m, d = _check_params(params, k)
    options = _checked_options(options, m, d)
    check_rank("x", x, 1, "(n,)")
    check_shape("x", x, (n,), "(n,), the input_size of params")
    check_floating("x", x)
    _check_state("state", state, k, m, options)
    p, dtype = _cast(params, x, *state)
    state = type(state)(*(jnp.asarray(s, dtype) for s in state))
    p = _bounded(p, options)
    recurrence = _recurrence(k, options)
    lag0 = recurrence.project_inputs(p, jnp.asarray(x, dtype))
    P, context = recurrence.read(state, lag0)
    state, _ = recurrence.update(state, lag0, context,
                                 _scan.contract(_stack_lags(p), P))
    return state, state.h


def attention_rnn_cell(*, k, options=None):
    """AttentionRNN(k) or (∞) as a cell of [`attnrnn.run`][attnrnn.loop.run]:
    ``cell(params, state, x) -> (state, h[t])``, i.e.
    [`attention_rnn_step`][attnrnn.attention.attention_rnn_step] with ``k`` and ``options``
    fixed; a skipped step repeats ``state.h`` (``cell.skip_output``). ``ar.run(cell, params,
    xs, initial_state=ar.attention_rnn_initial_state(params, k=k, options=options))`` is
    ``ar.attention_rnn(params, xs, k=k, options=options)``."""
    k = _check_k(k)
    options = _check_options(options)

    def cell(params, state, x):
        return attention_rnn_step(params, state, x, k=k, options=options)

    cell.skip_output = lambda state: state.h
    return cell


def _check_state(name, state, k, m, options):
    """``state`` must be the carry type of this ``k`` with the shapes of state size ``m`` (and
    of ``options.heads``)."""
    expected = _initial_state(k, m, jnp.float32, options)
    if type(state) is not type(expected):
        raise TypeError(
            f"{name} must be a {type(expected).__name__} for k={k!r}, got "
            f"{type(state).__name__}"
        )
    for field, got, want in zip(state._fields, state, expected):
        check_shape(f"{name}.{field}", got, want.shape)
        check_floating(f"{name}.{field}", got)


def _infinite_attention(a0, w_state, log_normaliser, valid, reverse=False, rate=None):
    """The ``(T, T)`` weights of AttentionRNN(∞) from per-step scalars, by lag (per head:
    ``(T, T, H)`` from ``(T, H)`` scalars and ``rate (H,)``).

    The state made at valid step ``u`` sits at lag ``#valid(u, t]`` from step ``t``, and its
    weight there is ``exp(w(h[u]) - λ·lag - log Z[t])``; with ``reverse`` the steps count from
    the end (the order they were processed in), and rows stay at their original positions.
    """
    if a0.ndim == 2:  # one head at a time
        def one_head(a0, w_state, log_normaliser, rate):
            return _infinite_attention(a0, w_state, log_normaliser, valid, reverse, rate)

        return jax.vmap(one_head, in_axes=(1, 1, 1, None if rate is None else 0),
                        out_axes=2)(a0, w_state, log_normaliser, rate)
    if reverse:
        flipped = (a0[::-1], w_state[::-1], log_normaliser[::-1], valid[::-1])
        return _infinite_attention(*flipped, rate=rate)[::-1]
    T = a0.shape[0]
    if T == 0:  # no steps: no weights (there is no lag-0 column to fill)
        return jnp.zeros((0, 0), a0.dtype)
    position = jnp.cumsum(valid)
    steps = jnp.arange(T)
    seen = valid[:, None] & valid[None, :] & (steps[None, :] < steps[:, None])
    lag = jnp.where(seen, position[:, None] - position[None, :], 0)
    aged = w_state[None, :] if rate is None else w_state[None, :] - rate * lag
    weight = jnp.exp(jnp.where(seen, aged - log_normaliser[:, None], -jnp.inf))
    a = jnp.zeros((T, T), a0.dtype).at[steps[:, None], lag].add(weight)
    return a.at[:, 0].set(a0)


def attention_rnn(
    params: AttentionRNNParams,
    xs,
    *,
    k,
    initial_state=None,
    mask=None,
    reverse=False,
    options=None,
    return_attention=False,
    return_state=False,
    unroll=1,
    remat_chunk=None,
    backward="autodiff",
):
    """Runs AttentionRNN(k) (``k`` an int) or AttentionRNN(∞) (``k=None``) over a sequence.

    The lag-0 scores and values of every step are computed before the loop in one matrix
    product each. Finite ``k`` carries the last ``k`` states and computes all lags in one
    batched contraction per step; ``k=None`` carries the online softmax (O(m) whatever T).

    Args:
      params: [`AttentionRNNParams`][attnrnn.attention.AttentionRNNParams] (params made for
        ``k=1`` and for ``k=None`` have the same shapes; this call's ``k`` says which model
        runs).
      xs: ``(T, n)``.
      k: an int >= 0, or None for AttentionRNN(∞).
      initial_state: the carry before the first step
        ([`WindowState`][attnrnn.attention.WindowState] for finite k,
        [`OnlineSoftmaxState`][attnrnn.attention.OnlineSoftmaxState] for ∞), e.g. the state a
        previous call returned: two chunks fed through it equal one call. Default
        [`attention_rnn_initial_state`][attnrnn.attention.attention_rnn_initial_state].
        Gradients flow into it.
      mask: boolean ``(T,)``; where False the step is skipped: the state is carried,
        nothing enters the history (a finite-k window does not shift), the output repeats
        the carried state and the attention row is all zeros.
      reverse: process the sequence from its end; outputs (and attention rows) stay at
        their original positions.
      options: [`AttentionOptions`][attnrnn.bounds.AttentionOptions] (stabilisers, the
        nonexpansive/score bounds, heads and recency); None is the homework's model.
      return_attention: also return the attention weights.
      return_state: also return the final carry.
      unroll: lax.scan unroll factor.
      remat_chunk: None, an int, or ``"sqrt"`` (``⌈√T⌉``): keep only the carry entering
        every chunk of that many steps for the backward pass and recompute the rest.
      backward: ``"autodiff"`` (JAX differentiates the scan; forward mode and higher
        orders work) or ``"fused"`` (reverse mode only): for AttentionRNN(∞) with one
        channel a head and capped scores (``heads = m = d``, ``score_cap``; see
        ``attnrnn.attention.has_fused_kernel``) a hand-written kernel
        (``attnrnn._attention_kernel``: the sums against the cap, nine numbers a channel
        stored per step), else the time loop's weight-tapped reverse pass
        (``attnrnn._scan``: it stores each step's carry, recomputes one step at a time and
        forms the lag weights' gradient as one contraction after the loop). Which is
        faster depends on the model and the machine (``docs/performance.md``).

    Returns:
      ``hs (T, m)``, or ``(hs, a)``, ``(hs, state)``, ``(hs, a, state)``. ``a`` is indexed
      by lag: row ``t-1`` holds ``a[t]``, column 0 the input term and column ``i`` the
      ``i``-th most recent state of the history (``h[t-i]`` when nothing is masked). ``a``
      is ``(T, k+1)`` for finite k and ``(T, T)`` for ``k=None``, with zeros beyond the
      history (for ∞ the lags count only the states made in this call); with
      ``options.heads = H > 1`` it has a last axis of heads, ``(T, k+1, H)`` or
      ``(T, T, H)``. With recency the weights are the ones the model used (the decay in them).
    """
    k = _check_k(k)
    n, m, d = _check_params(params, k)
    options = _checked_options(options, m, d)
    T = _scan.check_sequence(xs, n)
    loop = _scan.check_loop(T, mask=mask, reverse=reverse, unroll=unroll,
                            remat_chunk=remat_chunk, backward=backward,
                            return_state=return_state)
    return_attention = as_bool("return_attention", return_attention)
    if initial_state is not None:
        _check_state("initial_state", initial_state, k, m, options)
    p, dtype = _cast(params, xs, *(initial_state or ()))
    init = (_initial_state(k, m, dtype, options) if initial_state is None
            else type(initial_state)(*(jnp.asarray(s, dtype) for s in initial_state)))
    xs = jnp.asarray(xs, dtype)
    p = _bounded(p, options)
    kernel = (_capped_kernel(options, m, d, dtype) if k is None and loop.backward == "fused"
              and loop.remat_chunk is None and not return_attention else None)
    if kernel is None:
        final, (hs, rows) = _scan.run_recurrence(_recurrence(k, options), _stack_lags(p), p,
                                                 init, xs, **loop.run_options())
    else:
        final, hs = _kernel_run(kernel, p, init, xs, loop)
    if k is None and return_attention:
        rows = _infinite_attention(
            *rows, jnp.ones((T,), bool) if loop.mask is None else loop.mask, loop.reverse,
            _recency(options, dtype))
    outputs = ((hs,) + ((rows,) if return_attention else ())
               + ((final,) if loop.return_state else ()))
    return outputs[0] if len(outputs) == 1 else outputs


def _kernel_applies(options: AttentionOptions, m, d, dtype) -> bool:
    """Whether AttentionRNN(∞) has the hand-written kernel (``attnrnn._attention_kernel``):
    one channel a head (``H = m = d``), capped scores small enough that ``e^{-2c}`` is a
    normal number of ``dtype``, past states fed as they are."""
    cap = options.score_cap
    return not (options.heads != m or d != m or m == 1 or cap is None
                or options.normalize_states or 2 * cap > -math.log(jnp.finfo(dtype).tiny))


def _capped_kernel(options: AttentionOptions, m, d, dtype):
    """``(kernel, cap)`` where ``backward="fused"`` has a hand-written kernel, else None
    (the loop's weight-tapped pass)."""
    if not _kernel_applies(options, m, d, dtype):
        return None
    rates = options.recency or (0.0,) * m
    return capped_kernel(partial(_lag0, options=options), options.score_cap,
                         options.score_scale, tuple(rates)), options.score_cap


def has_fused_kernel(params: AttentionRNNParams, *, k, options=None) -> bool:
    """Whether ``attention_rnn(params, xs, k=k, options=options, backward="fused")`` runs the
    hand-written kernel of ``attnrnn._attention_kernel`` (AttentionRNN(∞) with one channel a
    head and capped scores, without ``return_attention`` or ``remat_chunk``) rather than the
    loop's weight-tapped pass. The training application runs such models with it."""
    k = _check_k(k)
    _, m, d = _check_params(params, k)
    options = _checked_options(options, m, d)
    return k is None and _kernel_applies(options, m, d, jnp.result_type(*params))


def _kernel_run(kernel, p, init, xs, loop):
    """``(final, hs)`` by the hand-written kernel, from and to the library's carry."""
    kernel, cap = kernel
    recurrence = _scan.Recurrence(None, None, None, kernel=kernel)
    (h, D, N), hs = _scan.run_recurrence(recurrence, _stack_lags(p), p,
                                         to_kernel_state(init, cap), xs, **loop.run_options())
    return OnlineSoftmaxState(h, jnp.full(h.shape, cap, h.dtype), D, N), hs


def attention_rnn_jacobian(params: AttentionRNNParams, x, history, *, k, lag=1, options=None):
    """Closed-form ``∂h[t]/∂h[t-1]`` (or ``∂h[t]/∂h[t-lag]`` through the lag term), holding
    the input and the other states of the history fixed.

    ``h[t-i]`` enters only the lag-``i`` term, through its score ``w_i = h^T Q_i^T K_i h`` and
    its value ``v_i = V_i h``; with ``∂a_j/∂w_i = a_j (δ_ji - a_i)``::

        ∂h[t]/∂h[t-i] = a_i (V_i + (v_i - h[t]) h[t-i]^T (Q_i^T K_i + K_i^T Q_i))

    (``Q_i = Q`` etc. for every lag of AttentionRNN(∞)). For ``i = 1`` this is the total
    derivative, as ``h[t-1]`` reaches ``h[t]`` by no other path. With ``options`` the same
    holds head by head on the weights as the bounds apply them: head ``g``'s rows are
    ``a_{i,g} (V_{i,g} + (v_{i,g} - h[t]_g) (∂w_{i,g}/∂h)^T)`` with ``∂w_{i,g}/∂h = s c'
    (Q_{i,g}^T K_{i,g} + K_{i,g}^T Q_{i,g}) h`` (``s`` the score scale, ``c'`` the cap's
    slope); recency only changes ``a``; with ``normalize_states`` the state enters as
    ``p = h / rms(h)``, whose Jacobian ``r I - r³ h h^T / m`` multiplies on the right.

    Args:
      params: [`AttentionRNNParams`][attnrnn.attention.AttentionRNNParams].
      x: ``x[t] (n,)``.
      history: ``(L, m)``, most recent first (``history[i-1] = h[t-i]``): ``L = k`` for
        finite k (zeros for states before the start), ``L = t-1`` (every past state) for
        ``k=None``.
      k: an int >= 0, or None for AttentionRNN(∞).
      lag: which past state to differentiate by, ``1 <= lag <= L``.
      options: [`AttentionOptions`][attnrnn.bounds.AttentionOptions]; None is the homework's
        model.

    Returns:
      ``(m, m)``; zeros when there is no ``h[t-1]`` term (``k = 0`` or ``t = 1``).
    """
    k = _check_k(k)
    n, m, d = _check_params(params, k)
    options = _checked_options(options, m, d)
    check_shape("x", x, (n,), "(n,), the input_size of params")
    check_floating("x", x)
    lags = check_rank("history", history, 2, "(L, m), most recent first")[0]
    check_shape("history", history, (lags if k is None else k, m), (
        "(t-1, m), every past state" if k is None else f"(k, m) = ({k}, {m})"
    ))
    check_floating("history", history)
    lag = as_int("lag", lag, minimum=1)
    if lags and lag > lags:
        raise ValueError(f"lag must be between 1 and the history's {lags} states, got {lag}")
    p, dtype = _cast(params, x, history)
    if lags == 0:
        return jnp.zeros((m, m), dtype)
    p = _bounded(p, options)
    history = jnp.asarray(history, dtype)
    past = _past(history, options)
    stacked = _stack_lags(p)
    if k is None:  # one shared set for every lag
        stacked = jnp.broadcast_to(stacked, (lags, *stacked.shape[1:]))
    qkv = _scan.contract(stacked, past)
    w, v = _lag_scores_values(qkv, m, options)
    a, h = _attend(*_lag0(p, jnp.asarray(x, dtype), options), w, v, options)
    i = lag - 1
    j = 0 if k is None else i  # the weights of lag i
    H = options.heads
    Q, K = (w_[j].reshape(H, d // H, m) for w_ in (p.Q_h, p.K_h))
    q, key = (part[i].reshape(H, d // H) for part in _split_qkv(qkv, m)[:2])
    slope = jnp.einsum("gdm,gd->gm", Q, key) + jnp.einsum("gdm,gd->gm", K, q)
    slope = slope * options.score_scale
    if options.score_cap is not None:
        raw = options.score_scale * jnp.sum(q * key, axis=-1)
        slope = slope * (1 - jnp.tanh(raw / options.score_cap) ** 2)[:, None]
    weight = a[lag].reshape(H)
    rows = weight[:, None, None] * (p.V_h[j].reshape(H, m // H, m) + jnp.einsum(
        "gi,gm->gim", (v[i] - h).reshape(H, m // H), slope))
    jacobian = rows.reshape(m, m)
    if options.normalize_states:
        state = history[i]
        r = lax.rsqrt(jnp.mean(state**2) + 1e-6)
        jacobian = jacobian @ (r * jnp.eye(m, dtype=dtype) - r**3 * jnp.outer(state, state) / m)
    return jacobian


def bounded_params(params, options: AttentionOptions):
    """The weights as the bounds of ``options`` apply them (``attention_rnn`` does this once
    per call): useful to inspect the effective weights, or to project parameters onto the
    bounded set after an update instead of reparametrising.

    Args:
      params: [`AttentionRNNParams`][attnrnn.attention.AttentionRNNParams].
      options: [`AttentionOptions`][attnrnn.bounds.AttentionOptions]; only its
        ``nonexpansive``, ``score_bound`` and ``value_bound`` act here.

    Returns:
      [`AttentionRNNParams`][attnrnn.attention.AttentionRNNParams] with ``V_h``, ``Q_h``,
      ``K_h`` and ``V_x`` rescaled.
    """
    if not isinstance(options, AttentionOptions):
        raise TypeError(f"options must be AttentionOptions, got {type(options).__name__}")
    if not isinstance(params, AttentionRNNParams):
        raise TypeError(f"params must be AttentionRNNParams, got {type(params).__name__}")
    lags = check_rank("params.Q_h", params.Q_h, 3, "(L, d, m)")[0]
    _check_params(params, None if lags == 1 else lags)  # any k: only the shapes matter here
    _check_options(options)
    return _bounded(params, options)
