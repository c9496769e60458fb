r"""Strided, dilated, padded, grouped convolution (homework 1.1) and its closed-form gradients.

Convolution here is cross-correlation, as in deep-learning libraries. For an input
``C × H × W``, ``F`` filters of ``K_H × K_W``, padding ``P_top, P_bottom, P_left, P_right``,
stride ``S_H, S_W`` and dilation ``D_H, D_W`` (the same for ``W``):

$$
H_\text{out} = \left\lfloor \frac{P_\text{top} + P_\text{bottom} + H - (D_H (K_H - 1) + 1)}{S_H}
\right\rfloor + 1,
$$

and in 1-D, with 0-based ``r`` and ``k``,

$$
y[f, r] = \sum_c \sum_k x_\text{pad}[c,\ r S + k D]\; W[f, c, k].
$$

The backward pass is again a convolution:

* $\partial\ell / \partial W[f, c, k] = \sum_r g[f, r]\, x_\text{pad}[c,\ r S + k D]$
  correlates the padded input with the output gradient ``g`` *dilated by the stride* (and
  steps by the forward dilation);
* $\partial\ell / \partial x$ is a *full* convolution of the stride-dilated ``g`` with the
  flipped kernel.

Every function works on one example, channel-first; batch with ``jax.vmap``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from attnrnn._checks import (
    as_int,
    as_int_tuple,
    check_floating,
    check_rank,
    check_shape,
    initialiser,
)

__all__ = [
    "ConvParams",
    "conv_output_shape",
    "conv",
    "conv_init",
    "conv_weight_grad",
    "conv_input_grad",
]


class ConvParams(NamedTuple):
    """Weights ``w (F, C // groups, *kernel)`` and bias ``b (F,)``; unpacks as ``w, b``."""

    w: jax.Array
    b: jax.Array


class _Geometry(NamedTuple):
    """Validated static description of one convolution (all tuples have one entry per dim)."""

    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    out: tuple[int, ...]


def _explicit_padding(padding, spatial, kernel, stride, dilation):
    """Turns every accepted ``padding`` form into one ``(lo, hi)`` pair per spatial dim."""
    nd = len(spatial)
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0),) * nd
        if mode == "SAME":
            # As jax.lax: output ceil(size / stride), the extra padding going to the end.
            pairs = []
            for size, k, s, d in zip(spatial, kernel, stride, dilation):
                total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        raise ValueError(f"padding must be 'SAME' or 'VALID' when a string, got {padding!r}")
    if isinstance(padding, (list, tuple)) and padding and all(
        isinstance(p, (list, tuple)) for p in padding
    ):
        if len(padding) != nd or any(len(p) != 2 for p in padding):
            raise ValueError(
                f"padding as pairs must be {nd} (lo, hi) pairs, one per spatial "
                f"dimension, got {padding!r}"
            )
        return tuple(
            (
                as_int(f"padding[{i}][0]", lo, minimum=0),
                as_int(f"padding[{i}][1]", hi, minimum=0),
            )
            for i, (lo, hi) in enumerate(padding)
        )
    flat = as_int_tuple("padding", padding, nd, minimum=0)
    return tuple((p, p) for p in flat)


def _geometry(spatial, kernel, *, stride, padding, dilation, kernel_name="kernel_size",
              input_name="input") -> _Geometry:
    nd = len(spatial)
    kernel = as_int_tuple(kernel_name, kernel, nd, minimum=1)
    stride = as_int_tuple("stride", stride, nd, minimum=1)
    dilation = as_int_tuple("dilation", dilation, nd, minimum=1)
    pads = _explicit_padding(padding, spatial, kernel, stride, dilation)
    out = []
    for i, (size, k, s, d, (lo, hi)) in enumerate(zip(spatial, kernel, stride, dilation, pads)):
        span = d * (k - 1) + 1
        if span > size + lo + hi:
            raise ValueError(
                f"{kernel_name}[{i}]={k} with dilation {d} spans {span} positions, more than "
                f"the padded {input_name}'s {size + lo + hi} (size {size} + padding "
                f"{lo}+{hi}) along spatial dimension {i}"
            )
        out.append((lo + hi + size - span) // s + 1)
    return _Geometry(tuple(spatial), kernel, stride, dilation, pads, tuple(out))


def conv_output_shape(
    input_shape, kernel_size, *, filters=1, stride=1, padding=0, dilation=1
) -> tuple[int, ...]:
    """Output shape of [`conv`][attnrnn.conv.conv], by the formula

    ``out = floor((P_lo + P_hi + size - (D (K - 1) + 1)) / S) + 1`` per spatial dimension.

    Args:
      input_shape: ``(C, *spatial)``, or ``spatial`` alone (no channel axis) when it has as
        many entries as ``kernel_size``. An int ``kernel_size`` means the input has a
        channel axis.
      kernel_size: int (every spatial dim) or one int per spatial dim.
      filters: number of filters ``F``, the output's channel count.
      stride, padding, dilation: as for [`conv`][attnrnn.conv.conv].

    Returns:
      ``(filters, *out)`` for an input with a channel axis, ``out`` without one. For
      example ``((1, 21, 12), (4, 5), stride=4) -> (1, 5, 2)`` and
      ``((21, 12), (4, 5), stride=4) -> (5, 2)``.
    """
    input_shape = tuple(as_int_tuple("input_shape", tuple(input_shape), len(input_shape), minimum=1))
    filters = as_int("filters", filters, minimum=1)
    if isinstance(kernel_size, (list, tuple)):
        if len(input_shape) == len(kernel_size):
            return _geometry(
                input_shape, kernel_size, stride=stride, padding=padding, dilation=dilation
            ).out
        if len(input_shape) != len(kernel_size) + 1:
            raise ValueError(
                f"input_shape {input_shape} must be (C, *spatial) or spatial alone for a "
                f"{len(kernel_size)}-D kernel_size {tuple(kernel_size)}"
            )
    if len(input_shape) < 2:
        raise ValueError(
            f"input_shape must be (C, *spatial) with at least one spatial dim, got {input_shape}"
        )
    geom = _geometry(
        input_shape[1:], kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    return (filters, *geom.out)


def _check_groups(groups, in_channels, out_channels) -> int:
    groups = as_int("groups", groups, minimum=1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels ({in_channels}) and the "
            f"filters ({out_channels})"
        )
    return groups


def _check_weight(w, in_channels, groups):
    """Checks ``w (F, C // groups, *kernel)`` against the input; returns (F, kernel)."""
    groups = _check_groups(groups, in_channels, w.shape[0])
    if w.shape[1] * groups != in_channels:
        raise ValueError(
            f"w must have shape (F, C // groups, *kernel) = (F, {in_channels // groups}, ...) "
            f"for the {in_channels} input channels of x and groups={groups}, got "
            f"{tuple(w.shape)}"
        )
    return w.shape[0], tuple(w.shape[2:]), groups


def _dimension_numbers(nd: int):
    spatial = "DHW"[-nd:]
    return lax.conv_dimension_numbers(
        (1, 1) + (1,) * nd, (1, 1) + (1,) * nd, ("NC" + spatial, "OI" + spatial, "NC" + spatial)
    )


def conv(x, w, *, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation of one channel-first example with a bank of filters.

    ``y[f, r] = Σ_{c ∈ group(f)} Σ_k x_pad[c, r S + k D] w[f, c, k]`` (written for 1-D; the
    same holds per spatial dimension in 2-D and 3-D).

    Args:
      x: ``(C, *spatial)`` with 1, 2 or 3 spatial dimensions.
      w: ``(F, C // groups, *kernel)``.
      stride: int or one per spatial dim, >= 1.
      padding: an int (every side), one int per spatial dim (both sides), one
        ``(lo, hi)`` pair per spatial dim, ``"SAME"`` (output ``ceil(size / stride)``, as
        jax.lax) or ``"VALID"``.
      dilation: int or one per spatial dim, >= 1 (the kernel's taps are ``D`` apart).
      groups: splits channels and filters into this many independent convolutions.

    Returns:
      ``y (F, *out)`` with ``out`` as in [`conv_output_shape`][attnrnn.conv.conv_output_shape],
      in the inputs' result dtype.
    """
    x_shape = check_rank("x", x, (2, 3, 4), "(C, *spatial) with 1 to 3 spatial dims")
    check_rank("w", w, len(x_shape) + 1, f"(F, C // groups, *kernel) to match x of shape {x_shape}")
    check_floating("x", x)
    check_floating("w", w)
    _, kernel, groups = _check_weight(w, x_shape[0], groups)
    geom = _geometry(x_shape[1:], kernel, stride=stride, padding=padding, dilation=dilation,
                     kernel_name="w's kernel", input_name="x")
    dtype = jnp.result_type(x, w)
    y = lax.conv_general_dilated(
        jnp.asarray(x, dtype)[None],
        jnp.asarray(w, dtype),
        window_strides=geom.stride,
        padding=geom.padding,
        rhs_dilation=geom.dilation,
        dimension_numbers=_dimension_numbers(len(kernel)),
        feature_group_count=groups,
    )
    return y[0]


@initialiser
def conv_init(key, in_channels, out_channels, kernel_size, *, groups=1, dtype=jnp.float32):
    """Fan-in scaled initialisation, ``w, b ~ U(-1/√fan_in, 1/√fan_in)``.

    ``fan_in = (in_channels // groups) · prod(kernel_size)``; this is PyTorch's default for
    ``nn.Conv*d``, so outputs start with variance about 1/3 of the inputs'.

    Args:
      key: a ``jax.random`` key.
      in_channels, out_channels: ``C`` and ``F``.
      kernel_size: an int per spatial dim (a tuple's length sets 1-D/2-D/3-D); a bare int
        means 1-D.
      groups: must divide both channel counts.
      dtype: a floating dtype.

    Returns:
      [`ConvParams`][attnrnn.conv.ConvParams] ``(w (F, C // groups, *kernel), b (F,))``; use as
      ``conv(x, w) + b[:, None, ...]``.
    """
    in_channels = as_int("in_channels", in_channels, minimum=1)
    out_channels = as_int("out_channels", out_channels, minimum=1)
    if isinstance(kernel_size, (int,)) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size,)
    kernel = as_int_tuple("kernel_size", kernel_size, len(kernel_size), minimum=1)
    if not 1 <= len(kernel) <= 3:
        raise ValueError(f"kernel_size must have 1 to 3 entries, got {kernel}")
    groups = _check_groups(groups, in_channels, out_channels)
    bound = 1.0 / math.sqrt(in_channels // groups * math.prod(kernel))
    w_key, b_key = jax.random.split(key)
    w = jax.random.uniform(
        w_key, (out_channels, in_channels // groups, *kernel), dtype, -bound, bound
    )
    b = jax.random.uniform(b_key, (out_channels,), dtype, -bound, bound)
    return ConvParams(w, b)


def _check_output_grad(g, out_channels, geom):
    check_shape("g", g, (out_channels, *geom.out), "the shape of conv's output")
    check_floating("g", g)


def conv_weight_grad(x, g, kernel_size, *, stride=1, padding=0, dilation=1, groups=1):
    """``∂ℓ/∂W`` given ``g = ∂ℓ/∂y``, computed as a convolution.

    ``dW[f, c, k] = Σ_r g[f, r] x_pad[c, r S + k D]``: the padded input correlated with the
    output gradient used as a kernel *dilated by the forward stride* ``S``, stepping by the
    forward dilation ``D``. Positions of ``x`` the forward pass never reached are cropped.

    Args:
      x: the forward input ``(C, *spatial)``.
      g: ``(F, *out)``, the gradient of the loss with respect to ``conv(x, W)``.
      kernel_size: the forward kernel's spatial size (int or one per dim).
      stride, padding, dilation, groups: those of the forward call.

    Returns:
      ``dW`` with the shape of ``W``: ``(F, C // groups, *kernel)``.
    """
    x_shape = check_rank("x", x, (2, 3, 4), "(C, *spatial) with 1 to 3 spatial dims")
    check_rank("g", g, len(x_shape), f"(F, *out) to match x of shape {x_shape}")
    check_floating("x", x)
    out_channels = g.shape[0]
    groups = _check_groups(groups, x_shape[0], out_channels)
    geom = _geometry(x_shape[1:], kernel_size, stride=stride, padding=padding, dilation=dilation)
    _check_output_grad(g, out_channels, geom)
    dtype = jnp.result_type(x, g)
    nd = len(geom.spatial)
    cg = x_shape[0] // groups
    # Channels within a group become the batch, so one grouped conv gives every (f, c) pair.
    lhs = jnp.asarray(x, dtype).reshape(groups, cg, *geom.spatial).swapaxes(0, 1)
    rhs = jnp.asarray(g, dtype)[:, None]
    dw = lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=geom.dilation,
        padding=geom.padding,
        rhs_dilation=geom.stride,
        dimension_numbers=_dimension_numbers(nd),
        feature_group_count=groups,
    )
    dw = dw[(slice(None), slice(None)) + tuple(slice(0, k) for k in geom.kernel)]
    return dw.swapaxes(0, 1)


def conv_input_grad(w, g, input_shape, *, stride=1, padding=0, dilation=1, groups=1):
    """``∂ℓ/∂x`` given ``g = ∂ℓ/∂y``, computed as a full convolution.

    ``dx[c, i] = Σ_f Σ_k g_S[f, i + P_lo - k D] W[f, c, k]``: the output gradient dilated by
    the forward stride (``S - 1`` zeros between entries), fully padded, correlated with the
    spatially *flipped* kernel (dilation ``D``, input/output channels swapped). Padding
    rows of the forward input are cropped away.

    Args:
      w: the forward weights ``(F, C // groups, *kernel)``.
      g: ``(F, *out)``, the gradient of the loss with respect to ``conv(x, w)``.
      input_shape: the forward input's shape ``(C, *spatial)``.
      stride, padding, dilation, groups: those of the forward call.

    Returns:
      ``dx`` with shape ``input_shape``.
    """
    w_shape = check_rank("w", w, (3, 4, 5), "(F, C // groups, *kernel) with 1 to 3 spatial dims")
    input_shape = as_int_tuple("input_shape", tuple(input_shape), len(input_shape), minimum=1)
    if len(input_shape) != len(w_shape) - 1:
        raise ValueError(
            f"input_shape must be (C, *spatial) with {len(w_shape) - 2} spatial dims to match "
            f"w of shape {w_shape}, got {input_shape}"
        )
    check_floating("w", w)
    out_channels, kernel, groups = _check_weight(w, input_shape[0], groups)
    geom = _geometry(input_shape[1:], kernel, stride=stride, padding=padding, dilation=dilation)
    check_rank("g", g, len(w_shape) - 1, "(F, *out)")
    _check_output_grad(g, out_channels, geom)
    dtype = jnp.result_type(w, g)
    nd = len(kernel)
    # Full padding of the dilated gradient, less the forward padding that x never had.
    pads = tuple(
        (d * (k - 1) - lo, size + lo - 1 - (o - 1) * s)
        for size, k, s, d, (lo, _), o in zip(
            geom.spatial, kernel, geom.stride, geom.dilation, geom.padding, geom.out
        )
    )
    fg = out_channels // groups
    cg = input_shape[0] // groups
    # (G, Fg, Cg, *K) -> (G·Cg, Fg, *K): a group's input channels become its filters.
    rhs = jnp.asarray(w, dtype).reshape(groups, fg, cg, *kernel).swapaxes(1, 2)
    rhs = jnp.flip(rhs.reshape(groups * cg, fg, *kernel), axis=tuple(range(2, 2 + nd)))
    dx = lax.conv_general_dilated(
        jnp.asarray(g, dtype)[None],
        rhs,
        window_strides=(1,) * nd,
        padding=pads,
        lhs_dilation=geom.stride,
        rhs_dilation=geom.dilation,
        dimension_numbers=_dimension_numbers(nd),
        feature_group_count=groups,
    )
    return dx[0]
