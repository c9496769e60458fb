"""Flax NNX modules over the library's pure functions (the optional extra ``attnrnn[nnx]``,
or ``attnrnn[flax]``; imported only as ``attnrnn.nnx``).

Each module holds its weights as ``nnx.Param``s — one per field of the library's parameter
NamedTuple, so ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` updates them — and calls the pure
function on a batch (``jax.vmap`` inside): ``rnn(xs)`` with ``xs (B, T, n)`` returns
``hs (B, T, m)``. ``module.params`` is the library's NamedTuple of the current weights, and
``module.load(params)`` sets them from one, so a model moves between the functional API, a
checkpoint and NNX without copying by hand. Options (mask, reverse, initial state,
return_state, backward, unroll) are the functions' own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import attnrnn as ar

__all__ = ["GatedRNN", "AttentionRNN", "Conv"]


class _Wrapper(nnx.Module):
    """Weights as ``nnx.Param``s named like the fields of ``_PARAMS`` (a NamedTuple type)."""

    _PARAMS: type

    def _hold(self, params):
        for field, value in zip(params._fields, params):
            setattr(self, field, nnx.Param(value))

    @property
    def params(self):
        """The current weights as the library's NamedTuple."""
        return self._PARAMS(*(getattr(self, f)[...] for f in self._PARAMS._fields))

    def load(self, params):
        """Sets the weights from the library's NamedTuple (shapes must match)."""
        for field, value in zip(self._PARAMS._fields, self._PARAMS(*params)):
            old = getattr(self, field)
            if jnp.shape(value) != old.shape:
                raise ValueError(f"params.{field} must have shape {old.shape}, got "
                                 f"{jnp.shape(value)}")
            old[...] = value


def _batched(name, xs, rank):
    if jnp.ndim(xs) != rank:
        raise ValueError(f"{name} must be a batch of rank {rank} (a leading batch axis), got "
                         f"shape {jnp.shape(xs)}")
    return xs


class GatedRNN(_Wrapper):
    """[`attnrnn.gated_rnn`][attnrnn.gated.gated_rnn] as a module: ``GatedRNN(n, m,
    rngs=nnx.Rngs(0))(xs)``.

    Args:
      input_size, hidden_size: ``n``, ``m``.
      rngs: ``nnx.Rngs`` (its ``params`` stream draws the weights, as
        [`attnrnn.gated_rnn_init`][attnrnn.gated.gated_rnn_init]).
      gate_offset, dtype: as [`attnrnn.gated_rnn_init`][attnrnn.gated.gated_rnn_init].
      backward, unroll, remat_chunk: as [`attnrnn.gated_rnn`][attnrnn.gated.gated_rnn].
    """

    _PARAMS = ar.GatedRNNParams

    def __init__(self, input_size, hidden_size, *, rngs: nnx.Rngs, gate_offset=0.0,
                 dtype=jnp.float32, backward="fused", unroll=1, remat_chunk=None):
        self._hold(ar.gated_rnn_init(rngs.params(), input_size, hidden_size,
                                     gate_offset=gate_offset, dtype=dtype))
        self.backward, self.unroll, self.remat_chunk = backward, unroll, remat_chunk

    def __call__(self, xs, initial_state=None, *, mask=None, reverse=False,
                 return_state=False):
        """``xs (B, T, n)``, ``initial_state (B, m)``, ``mask (B, T)`` -> ``hs (B, T, m)`` (and
        the final states ``(B, m)`` with ``return_state``)."""
        params = self.params

        def one(x, h, m):
            return ar.gated_rnn(params, x, initial_state=h, mask=m, reverse=reverse,
                                unroll=self.unroll, remat_chunk=self.remat_chunk,
                                backward=self.backward, return_state=return_state)

        axes = (0, None if initial_state is None else 0, None if mask is None else 0)
        return jax.vmap(one, in_axes=axes)(_batched("xs", xs, 3), initial_state, mask)


class AttentionRNN(_Wrapper):
    """[`attnrnn.attention_rnn`][attnrnn.attention.attention_rnn] as a module: AttentionRNN(k)
    (``k`` an int) or (∞) (``k=None``), with its
    [`attnrnn.AttentionOptions`][attnrnn.bounds.AttentionOptions].

    Args:
      input_size, hidden_size: ``n``, ``m``.
      k: the lags, or None.
      rngs: ``nnx.Rngs``.
      key_size, dtype: as [`attnrnn.attention_rnn_init`][attnrnn.attention.attention_rnn_init].
      options, backward, unroll, remat_chunk: as
        [`attnrnn.attention_rnn`][attnrnn.attention.attention_rnn] (None: the homework's model).
    """

    _PARAMS = ar.AttentionRNNParams

    def __init__(self, input_size, hidden_size, *, k, rngs: nnx.Rngs, key_size=None,
                 options=None, dtype=jnp.float32, backward="autodiff", unroll=1,
                 remat_chunk=None):
        self._hold(ar.attention_rnn_init(rngs.params(), input_size, hidden_size, k=k,
                                         key_size=key_size, dtype=dtype))
        self.k, self.options = k, options
        self.backward, self.unroll, self.remat_chunk = backward, unroll, remat_chunk

    def __call__(self, xs, initial_state=None, *, mask=None, reverse=False,
                 return_attention=False, return_state=False):
        """``xs (B, T, n)``, ``initial_state`` a batched ``WindowState``/``OnlineSoftmaxState``,
        ``mask (B, T)`` -> ``hs (B, T, m)`` (and ``a``, the final states, as asked)."""
        params = self.params

        def one(x, state, m):
            return ar.attention_rnn(params, x, k=self.k, initial_state=state, mask=m,
                                    reverse=reverse, options=self.options,
                                    return_attention=return_attention,
                                    return_state=return_state, unroll=self.unroll,
                                    remat_chunk=self.remat_chunk, backward=self.backward)

        axes = (0, None if initial_state is None else 0, None if mask is None else 0)
        return jax.vmap(one, in_axes=axes)(_batched("xs", xs, 3), initial_state, mask)


class Conv(_Wrapper):
    """[`attnrnn.conv`][attnrnn.conv.conv] plus bias as a module: ``x (B, C, *spatial)`` ->
    ``(B, F, *out)``.

    Args:
      in_channels, out_channels, kernel_size: as [`attnrnn.conv_init`][attnrnn.conv.conv_init].
      rngs: ``nnx.Rngs``.
      stride, padding, dilation, groups: as [`attnrnn.conv`][attnrnn.conv.conv].
      dtype: the weights' dtype.
    """

    _PARAMS = ar.ConvParams

    def __init__(self, in_channels, out_channels, kernel_size, *, rngs: nnx.Rngs, stride=1,
                 padding=0, dilation=1, groups=1, dtype=jnp.float32):
        self._hold(ar.conv_init(rngs.params(), in_channels, out_channels, kernel_size,
                                groups=groups, dtype=dtype))
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def __call__(self, x):
        w, b = self.params

        def one(x):
            y = ar.conv(x, w, stride=self.stride, padding=self.padding,
                        dilation=self.dilation, groups=self.groups)
            return y + b.reshape((-1,) + (1,) * (y.ndim - 1))

        return jax.vmap(one)(_batched("x", x, jnp.ndim(w)))
