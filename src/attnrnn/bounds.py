r"""AttentionRNN's stabilisers and bounds: [`AttentionOptions`][attnrnn.bounds.AttentionOptions]
and the reparametrisation they apply to the weights (applied to parameters by
[`attnrnn.attention.bounded_params`][attnrnn.attention.bounded_params]; this module reads no
other part of the library's AttentionRNN, so that ``attention`` can read it).

The bounds hold for *any* weights an optimiser reaches, because they act inside the function:
with ``nonexpansive`` the state stays within the largest input value (and the initial
state's past), ``‖h[t]‖ ≤ max(max_{s ≤ t} ‖V_x' x[s]‖, R_0)``, and with ``score_bound = b``
a past state's score is at most ``b² ‖h‖²`` — with ``value_bound = c`` and one-hot inputs,
``‖h[t]‖ ≤ c`` and ``|w_i| ≤ b² c²``. The proofs are in
[the theory page](../theory.md#bounded-attentionrnn-the-state-and-score-bounds).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp

from attnrnn._checks import as_int, check_static
from attnrnn.spectral import rescale_to_bound

__all__ = ["AttentionOptions"]


class AttentionOptions(NamedTuple):
    """Stabilisers and bounds; all off by default, which is the homework's model.

    ``score_scale`` multiplies every score (``1/√d`` is the transformer's choice);
    ``score_cap`` soft-caps scores to ``cap · tanh(w / cap)``; ``normalize_states`` feeds
    past states to their lag terms as ``h / rms(h)`` (queries, keys and values).

    The bounds reparametrise the weights inside the function, so they hold for *any*
    parameters an optimiser reaches. ``ν(W)`` is
    [`attnrnn.spectral.spectral_norm`][attnrnn.spectral.spectral_norm], an upper bound of the
    spectral norm ``‖W‖₂`` within a factor ``rank^{1/1024}`` of it:

    - ``nonexpansive``: every past-state value map is applied as
      ``V_i' = V_i / max(1, ν(V_i))``, so ``‖V_i'‖₂ ≤ 1``, and ``‖h[t]‖ ≤ max(max_{s ≤ t}
      ‖V_x' x[s]‖, R_0)`` (``R_0`` the largest past term the initial state holds: 0 by
      default).
    - ``score_bound = b``: every past-state query and key map is applied as
      ``Q_i' = Q_i / max(1, ν(Q_i) / b)`` (and ``K_i'`` alike), so ``‖Q_i'‖₂, ‖K_i'‖₂ ≤ b``
      and a past state's score ``|w_i| ≤ b² ‖h‖²`` (``b² m`` with ``normalize_states``).
    - ``value_bound = c``: every column ``j`` of the input value map is applied as
      ``V_x'[:, j] = V_x[:, j] / max(1, ‖V_x[:, j]‖ / c)``, so ``‖V_x' x‖ ≤ c ‖x‖₁``: with
      the two above and one-hot inputs, ``‖h[t]‖ ≤ c`` and ``|w_i| ≤ b² c²`` whatever the
      weights.

    The proofs, and the bound with an initial state, are in
    [the theory page](../theory.md#bounded-attentionrnn-the-state-and-score-bounds).

    Weighing a past state by its age as well as its content (AttentionRNN(∞)'s weights over
    the past otherwise cannot tell when a state was made):

    - ``heads = H``: the state, the queries and keys are split into ``H`` equal parts
      (``H`` divides ``m`` and ``d``); head ``g`` scores every term with its own part of the
      query and key, has its own softmax, and mixes its own part of the values:
      ``h[t]_g = Σ_i a_i^g[t] (v_i)_g``. One head is the homework's model.
    - ``recency = (λ_1, …, λ_H)``: the score of the state made ``i`` steps ago is lowered by
      ``λ_g · i`` in head ``g`` (the input term, lag 0, by nothing), so head ``g`` forgets at
      rate ``e^{-λ_g}`` per step whatever the content. Exact and streaming: the online
      softmax subtracts ``λ_g`` from its running maximum each step. None: all zero.
    - With ``H`` heads, ``nonexpansive`` bounds each head's rows of every past-state value
      map by ``1/√H`` (``‖V_{i,g}'‖₂ ≤ 1/√H``, so ``‖V_i'‖₂ ≤ 1`` still), and the state bound
      becomes ``‖h[t]‖ ≤ √H · max(max_{s ≤ t} ‖V_x' x[s]‖, R_0)`` (the proof on the theory
      page); recency never loosens a bound (it only moves weight between terms).
    """

    score_scale: float = 1.0
    score_cap: float | None = None
    normalize_states: bool = False
    nonexpansive: bool = False
    score_bound: float | None = None
    value_bound: float | None = None
    heads: int = 1
    recency: tuple | None = None


# The options of the model as the equations define it: no bound, no stabiliser (the
# training models call it `raw`).
RAW = AttentionOptions()


def _bounded(p, options: AttentionOptions):
    """[`bounded_params`][attnrnn.attention.bounded_params] without the checks
    (``attention_rnn`` has made them)."""
    if options.nonexpansive:
        H = options.heads
        L, m, _ = p.V_h.shape  # each head's rows of each lag's map, a stack of L·H matrices
        per_head = rescale_to_bound(p.V_h.reshape(L * H, m // H, m), 1.0 / H**0.5)
        p = p._replace(V_h=per_head.reshape(L, m, m))
    if options.score_bound is not None:
        p = p._replace(Q_h=rescale_to_bound(p.Q_h, options.score_bound),
                       K_h=rescale_to_bound(p.K_h, options.score_bound))
    if options.value_bound is not None:
        # + tiny: an upper bound still, and a finite derivative at an all-zero column.
        columns = jnp.sqrt(jnp.sum(p.V_x**2, axis=0) + jnp.finfo(p.V_x.dtype).tiny)
        p = p._replace(V_x=p.V_x / jnp.maximum(1.0, columns / options.value_bound)[None, :])
    return p


def _check_options(options) -> AttentionOptions:
    """``options`` checked (None: the homework's model), each field static."""
    if options is None:
        return RAW
    if not isinstance(options, AttentionOptions):
        raise TypeError(f"options must be AttentionOptions, got {type(options).__name__}")
    for name, value in zip(options._fields, options):  # e.g. options passed to jax.jit
        check_static(f"options.{name}", value)
    if not options.score_scale > 0:
        raise ValueError(f"options.score_scale must be > 0, got {options.score_scale}")
    for name in ("score_cap", "score_bound", "value_bound"):
        value = getattr(options, name)
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise ValueError(f"options.{name} must be a number > 0 or None, got {value!r}")
    if not isinstance(options.nonexpansive, bool):
        raise TypeError(f"options.nonexpansive must be a bool, got {options.nonexpansive!r}")
    if not isinstance(options.normalize_states, bool):
        raise TypeError(
            f"options.normalize_states must be a bool, got {options.normalize_states!r}")
    heads = as_int("options.heads", options.heads, minimum=1)
    recency = options.recency
    if recency is not None and not (
            isinstance(recency, tuple) and len(recency) == heads
            and all(isinstance(r, (int, float)) and not isinstance(r, bool)
                    and math.isfinite(r) and r >= 0 for r in recency)):
        raise ValueError(
            f"options.recency must be None or a tuple of {heads} numbers >= 0 (one per head, "
            f"options.heads={heads}), got {recency!r}")
    return options._replace(heads=heads)


def check_heads(options: AttentionOptions, m, d):
    """``options.heads`` must divide the state size ``m`` and the query/key size ``d``."""
    H = options.heads
    if m % H or d % H:
        raise ValueError(
            f"options.heads={H} must divide the state size m={m} and the query/key size "
            f"d={d}: each head takes an equal part of both")
