"""Bad input, generated: every public function of the library and the task/model factories,
called validly with exactly one argument broken, raises ValueError or TypeError naming that
argument — from the input checks, before any XLA work (under ``jax.eval_shape``, which
traces but never compiles or runs). ``make test`` tries a few hundred cases; ``make fuzz``
(``ATTNRNN_FUZZ_CASES``) at least 5,000 and prints the count."""

import os
import re

import jax
import jax.numpy as jnp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import attnrnn as ar
from attnrnn.train import make_model, make_task, parse_model

CASES = int(os.environ.get("ATTNRNN_FUZZ_CASES", "300"))
KEY = jax.random.PRNGKey(0)
TRIED = {"cases": 0}


def array(shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype))


def concrete(value):
    """Shape-only stand-ins become zeros where a function needs values (not under tracing)."""
    return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype)
                        if isinstance(a, jax.ShapeDtypeStruct) else a, value)


# Ways to break one argument, by kind: each is certainly invalid for that kind.
def broken_array(draw, shape, dtype=jnp.float32, free_axes=()):
    """``free_axes``: axes whose size the function does not constrain (a filter count)."""
    kind = draw(st.sampled_from(["rank+", "rank-", "size", "int", "str"]))
    constrained = [i for i in range(len(shape)) if i not in free_axes]
    if kind == "rank+":
        return array((*shape, 2), dtype)
    if kind == "rank-" and len(shape) > 0:
        return array(shape[:-1], dtype)
    if kind == "size" and constrained:
        axis = draw(st.sampled_from(constrained))
        return array(tuple(s + 1 if i == axis else s for i, s in enumerate(shape)), dtype)
    if kind == "int":
        return array(shape, jnp.int32)
    return "not an array"


def broken_int(draw, minimum=1, optional=False):
    """An invalid int (None is invalid only where the argument is not optional)."""
    return draw(st.sampled_from([minimum - 1, minimum - 5, 2.5, "3", True,
                                 *([] if optional else [None])]))


def broken_params(draw, params):
    """A params NamedTuple with one field broken, or the wrong container."""
    kind = draw(st.sampled_from(["field", "short", "dict"]))
    if kind == "short":
        return tuple(params)[:-1]
    if kind == "dict":
        return dict(params._asdict())
    field = draw(st.sampled_from(params._fields))
    leaf = getattr(params, field)
    return params._replace(**{field: broken_array(draw, leaf.shape, leaf.dtype)})


def gated_case(draw):
    n, m, T = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    params = jax.eval_shape(lambda: ar.gated_rnn_init(KEY, n, m))
    which = draw(st.sampled_from(["gated_rnn", "gated_rnn_step", "gated_rnn_jacobian"]))
    if which == "gated_rnn":
        args = {"params": params, "xs": array((T, n)), "initial_state": array((m,)),
                "mask": array((T,), jnp.bool_), "unroll": 1, "remat_chunk": 2}
        breakers = {"params": lambda: broken_params(draw, params),
                    "xs": lambda: broken_array(draw, (T, n)),
                    "initial_state": lambda: broken_array(draw, (m,)),
                    "mask": lambda: draw(st.sampled_from([array((T + 1,), jnp.bool_),
                                                          array((T,), jnp.float32)])),
                    "unroll": lambda: draw(st.sampled_from([0, -1, 2.5, "3", None])),
                    "remat_chunk": lambda: draw(st.sampled_from([0, -1, "cube", 1.5])),
                    "backward": lambda: draw(st.sampled_from(["magic", 1]))}
        return ar.gated_rnn, args, breakers
    fn = getattr(ar, which)
    args = {"params": params, "h_prev": array((m,)), "x": array((n,))}
    breakers = {"params": lambda: broken_params(draw, params),
                "h_prev": lambda: broken_array(draw, (m,)),
                "x": lambda: broken_array(draw, (n,))}
    return fn, args, breakers


def attention_case(draw):
    n, m, T = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    k = draw(st.sampled_from([0, 1, 2, None]))
    params = jax.eval_shape(lambda: ar.attention_rnn_init(KEY, n, m, k=k))
    state = jax.eval_shape(lambda: ar.attention_rnn_initial_state(params, k=k))
    wrong_k = draw(st.sampled_from([-1, 2.5, "two", True]))
    which = draw(st.sampled_from(["attention_rnn", "attention_rnn_step",
                                  "attention_rnn_initial_state", "attention_rnn_init"]))
    if which == "attention_rnn":
        args = {"params": params, "xs": array((T, n)), "k": k,
                "mask": array((T,), jnp.bool_), "initial_state": state}
        breakers = {"params": lambda: broken_params(draw, params),
                    "xs": lambda: broken_array(draw, (T, n)), "k": lambda: wrong_k,
                    "mask": lambda: array((T + 1,), jnp.bool_),
                    "initial_state": lambda: broken_params(draw, state),
                    "options": lambda: draw(st.sampled_from(
                        [{"nonexpansive": True}, ar.AttentionOptions(score_bound=-1.0)])),
                    "backward": lambda: "magic", "remat_chunk": lambda: 0}
        return ar.attention_rnn, args, breakers
    if which == "attention_rnn_step":
        args = {"params": params, "state": state, "x": array((n,)), "k": k}
        breakers = {"params": lambda: broken_params(draw, params),
                    "state": lambda: broken_params(draw, state),
                    "x": lambda: broken_array(draw, (n,)), "k": lambda: wrong_k}
        return ar.attention_rnn_step, args, breakers
    if which == "attention_rnn_initial_state":
        return (ar.attention_rnn_initial_state, {"params": params, "k": k},
                {"params": lambda: broken_params(draw, params), "k": lambda: wrong_k})
    args = {"key": KEY, "input_size": n, "hidden_size": m, "k": k}
    breakers = {"input_size": lambda: broken_int(draw), "hidden_size": lambda: broken_int(draw),
                "k": lambda: wrong_k, "key_size": lambda: broken_int(draw, optional=True),
                "dtype": lambda: draw(st.sampled_from([jnp.int32, "int8", bool, "no-such-type"]))}
    return ar.attention_rnn_init, args, breakers


def conv_case(draw):
    nd = draw(st.integers(1, 2))
    C, F = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    spatial = tuple(k + draw(st.integers(0, 4)) for k in kernel)
    x, w = array((C, *spatial)), array((F, C, *kernel))
    bad_geometry = {"stride": lambda: draw(st.sampled_from([0, -1, (1,) * (nd + 1), "2"])),
                    "dilation": lambda: draw(st.sampled_from([0, (1,) * (nd + 1), 1.5])),
                    "padding": lambda: draw(st.sampled_from([-1, "FULL", (1,) * (nd + 1)]))}
    which = draw(st.sampled_from(["conv", "conv_output_shape", "conv_init"]))
    if which == "conv":
        return ar.conv, {"x": x, "w": w}, {
            "x": lambda: broken_array(draw, x.shape, free_axes=range(1, nd + 1)),
            "w": lambda: broken_array(draw, w.shape, free_axes=(0, *range(2, nd + 2))),
            "groups": lambda: draw(st.sampled_from([0, 7, 2.5])), **bad_geometry}
    if which == "conv_output_shape":
        return ar.conv_output_shape, {"input_shape": x.shape, "kernel_size": kernel}, {
            "input_shape": lambda: draw(st.sampled_from(["shape", (C, *spatial, 1, 1, 1)])),
            "kernel_size": lambda: draw(st.sampled_from([0, (0,) * nd, "3"])),
            "filters": lambda: broken_int(draw), **bad_geometry}
    return ar.conv_init, {"key": KEY, "in_channels": C, "out_channels": F,
                          "kernel_size": kernel}, {
        "in_channels": lambda: broken_int(draw), "out_channels": lambda: broken_int(draw),
        "kernel_size": lambda: draw(st.sampled_from([0, (), (1, 1, 1, 1), "3"])),
        "dtype": lambda: jnp.int32}


def factory_case(draw):
    which = draw(st.sampled_from(["make_task", "make_model", "parse_model", "spectral_norm"]))
    if which == "make_task":
        return make_task, {"name": "adding", "length": 50}, {
            "name": lambda: draw(st.sampled_from(["copying", 3])),
            "length": lambda: draw(st.sampled_from([5, -1, 2.5]))}
    if which == "make_model":
        return make_model, {"spec": "gated", "input_size": 3, "hidden_size": 4, "outputs": 2}, {
            "spec": lambda: draw(st.sampled_from(["transformer", "attention", 7])),
            "input_size": lambda: broken_int(draw),
            "hidden_size": lambda: broken_int(draw), "outputs": lambda: broken_int(draw)}
    if which == "parse_model":
        return parse_model, {"spec": "attention:2"}, {
            "spec": lambda: draw(st.sampled_from(["attention:x", "gru:2", 7]))}
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return ar.spectral_norm, {"w": array(shape)}, {
        "w": lambda: draw(st.sampled_from([array((3,)), array(shape, jnp.int32), "w"]))}


FAMILIES = [gated_case, attention_case, conv_case, factory_case]
# The factories name the concept their argument is (as the CLI's flags do).
ALIASES = {("make_task", "name"): "task", ("parse_model", "spec"): "model",
           ("make_model", "spec"): "model"}
# Arguments validated eagerly by pure Python (sizes, names): called directly.
EAGER = {ar.conv_output_shape, ar.conv_init, ar.gated_rnn_init, ar.attention_rnn_init,
         make_task, make_model, parse_model}


@settings(max_examples=CASES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def test_one_broken_argument_is_named(data):
    draw = data.draw
    fn, args, breakers = draw(st.sampled_from(FAMILIES))(draw)
    name = draw(st.sampled_from(sorted(breakers)))
    args = {**args, name: breakers[name]()}
    try:
        if fn in EAGER:
            fn(**concrete(args))
        else:  # traces with shapes only: nothing is compiled or run
            jax.eval_shape(lambda: fn(**concrete(args)))
    except (ValueError, TypeError) as error:
        named = ALIASES.get((fn.__name__, name), name)
        assert re.search(rf"\b{re.escape(named)}\b", str(error)), (fn.__name__, name, error)
    else:
        raise AssertionError(f"{fn.__name__}({name}={args[name]!r}) was accepted")
    TRIED["cases"] += 1


@pytest.fixture(autouse=True, scope="module")
def _report_count():
    """After the module: the figure docs/reliability.md records (`make fuzz` shows it)."""
    yield
    if TRIED["cases"]:
        print(f"\nfuzz: {TRIED['cases']} bad calls, each a ValueError/TypeError naming its "
              "argument")
