"""Input validation shared by every public function.

Every check runs on static information (shapes, dtypes, Python values), so it raises the
same clear error eagerly and while tracing under ``jit``, before any XLA op is built.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def shape_of(name: str, x) -> tuple[int, ...]:
    """The shape of an array-like, or a TypeError naming ``name`` if it has none."""
    shape = getattr(x, "shape", None)
    if shape is None:
        if isinstance(x, (int, float, Sequence)) and not isinstance(x, (str, bytes)):
            return np.shape(x)
        raise TypeError(f"{name} must be an array, got {type(x).__name__}")
    return tuple(shape)


def dtype_of(x):
    return x.dtype if hasattr(x, "dtype") else jnp.asarray(x).dtype


def check_rank(name: str, x, ranks, what: str) -> tuple[int, ...]:
    """Checks that ``x`` has one of ``ranks`` dimensions; returns its shape."""
    shape = shape_of(name, x)
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if len(shape) not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise ValueError(
            f"{name} must have {expected} dimensions {what}, got shape {shape}"
        )
    return shape


def check_shape(name: str, x, expected: tuple[int, ...], what: str = "") -> None:
    shape = shape_of(name, x)
    if shape != tuple(expected):
        suffix = f" ({what})" if what else ""
        raise ValueError(f"{name} must have shape {tuple(expected)}{suffix}, got {shape}")


def check_floating(name: str, x) -> None:
    dtype = dtype_of(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating-point dtype, got {dtype}")


def check_mask(mask, length: int):
    """Validates a boolean ``(T,)`` step mask; returns it as an array (or None)."""
    if mask is None:
        return None
    check_shape("mask", mask, (length,), "one boolean per time step of xs")
    if dtype_of(mask) != jnp.bool_:
        raise TypeError(f"mask must be boolean, got dtype {dtype_of(mask)}")
    return jnp.asarray(mask)


def check_static(name: str, value) -> None:
    """``value`` must be a Python value, not traced: configuration is static (it decides
    shapes and the program), so under ``jax.jit`` it must be marked static."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} must be a static Python value, got a traced {value.aval.str_short()}; "
            f"with jax.jit pass static_argnames=({name.split('[')[0].split('.')[0]!r},) (or close "
            "over it)"
        )


def as_bool(name: str, value) -> bool:
    """A static Python bool."""
    check_static(name, value)
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a Python bool, got {type(value).__name__} {value!r}")
    return bool(value)


def as_int(name: str, value, *, minimum: int) -> int:
    """A static Python int >= ``minimum`` (bool and traced values are refused)."""
    check_static(name, value)
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a Python int, got bool {value!r}")
    if not isinstance(value, (int, np.integer)):
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(
                f"{name} must be a Python int, got {type(value).__name__} {value!r}"
            ) from None
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def as_int_tuple(name: str, value, length: int, *, minimum: int) -> tuple[int, ...]:
    """An int broadcast to ``length`` entries, or a sequence of exactly ``length`` ints."""
    check_static(name, value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,) * length
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(
            f"{name} must be an int or a sequence of {length} ints, got "
            f"{type(value).__name__} {value!r}"
        )
    if len(value) != length:
        raise ValueError(
            f"{name} must be an int or a sequence of {length} ints (one per spatial "
            f"dimension), got {value!r}"
        )
    return tuple(as_int(f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(value))


def initialiser(init):
    """Wraps a ``*_init(key, ..., dtype=...)``: validates ``dtype`` and draws in at least
    float32, then casts, so half-precision parameters (bfloat16, float16) get the same
    draws as float32 ones rounded (and initialisers such as the orthogonal one, whose QR
    has no half-precision kernel, work)."""

    @functools.wraps(init)
    def wrapped(*args, dtype=jnp.float32, **kwargs):
        check_static("dtype", dtype)
        try:
            floating = jnp.issubdtype(dtype, jnp.floating)
        except TypeError:
            floating = False
        if not floating:
            raise TypeError(f"dtype must be a floating dtype, got {dtype!r}")
        params = init(*args, dtype=jnp.promote_types(dtype, jnp.float32), **kwargs)
        return jax.tree.map(lambda a: a.astype(dtype), params)

    return wrapped


def check_gate_blocks(params, kind, gates: int) -> tuple[int, int]:
    """``(n, m)`` of a cell whose parameters stack ``gates`` blocks of ``m`` rows (the LSTM's
    four, the GRU's three): ``W_x (gates·m, n)``, ``W_h (gates·m, m)`` and biases
    ``(gates·m,)``, every one floating; ``params`` must be a ``kind``."""
    if not isinstance(params, kind):
        raise TypeError(f"params must be {kind.__name__}, got {type(params).__name__}")
    rows, n = check_rank("params.W_x", params.W_x, 2, f"({gates}m, n)")
    m = rows // gates
    check_shape("params.W_x", params.W_x, (gates * m, n), f"({gates}m, n)")
    check_shape("params.W_h", params.W_h, (gates * m, m), f"({gates}m, m)")
    for name, w in zip(kind._fields, params):
        if name not in ("W_x", "W_h"):
            check_shape(f"params.{name}", w, (gates * m,), f"({gates}m,)")
        check_floating(f"params.{name}", w)
    return n, m
