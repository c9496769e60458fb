"""The fused reverse pass of the gate cells (``attnrnn._cell_kernel``: the GRU's and the
LSTM's ``backward="fused"``, their default) against autodiff through the time loop, in
float64: under vmap (a batch of masks and initial states, the loss of a batch and per-example
gradients), with both loop layouts, rematerialised chunks, reverse, an ensemble of weights,
inputs projected inside the loop, and a recurrent matrix that arrives in row blocks."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attnrnn as ar
from attnrnn import _batching, _cell_kernel
from helpers import assert_tree_allclose

CELLS = {"gru": (ar.gru, ar.gru_init, lambda m: jnp.zeros(m, jnp.float64)),
         "lstm": (ar.lstm, ar.lstm_init, lambda m: (jnp.zeros(m, jnp.float64),) * 2)}


def setup(name, n=3, m=5, T=9, batch=3):
    run, init, zero = CELLS[name]
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = init(keys[0], n, m, dtype=jnp.float64)
    xs = jax.random.normal(keys[1], (batch, T, n), jnp.float64)
    states = jax.tree.map(lambda z: 0.5 * jax.random.normal(keys[2], (batch, *z.shape),
                                                            jnp.float64), zero(m))
    masks = jnp.asarray(np.random.default_rng(1).random((batch, T)) > 0.3)
    return run, params, xs, states, masks


@pytest.fixture(params=["in place", "lax.scan"])
def layout(request, monkeypatch):
    """Both layouts of the kernel's loops: steps read in place along the batch-major arrays,
    or (small steps) lax.scan over time-major copies."""
    monkeypatch.setattr(_cell_kernel, "SMALL_STEP", 0 if request.param == "in place" else 10**9)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("options", [dict(reverse=True),
                                     dict(remat_chunk=4, unroll=2)])
def test_fused_equals_autodiff_under_vmap(name, options, layout):
    run, params, xs, states, masks = setup(name)

    def loss(backward, p, x, state, mask):
        hs = run(p, x, initial_state=state, mask=mask, backward=backward, **options)
        return jnp.sum(jnp.sin(hs) * jnp.arange(1, hs.shape[-1] + 1)[None])

    def batch_loss(backward, p, x, state):
        return jnp.sum(jax.vmap(partial(loss, backward, p))(x, state, masks))

    values = {b: jax.vmap(lambda x, s, mk, b=b: run(params, x, initial_state=s, mask=mk,
                                                    backward=b, **options))(xs, states, masks)
              for b in ("fused", "autodiff")}
    assert_tree_allclose(values["fused"], values["autodiff"], rtol=1e-12, atol=1e-14)
    grads = {b: jax.jit(jax.grad(partial(batch_loss, b), (0, 1, 2)))(params, xs, states)
             for b in ("fused", "autodiff")}
    assert_tree_allclose(grads["fused"], grads["autodiff"], rtol=1e-10, atol=1e-13)
    per_example = {b: jax.vmap(jax.grad(partial(loss, b), (0, 1, 2)), (None, 0, 0, 0))(
        params, xs, states, masks) for b in ("fused", "autodiff")}
    assert all(leaf.shape[0] == 3 for leaf in jax.tree.leaves(per_example["fused"][0]))
    assert_tree_allclose(per_example["fused"], per_example["autodiff"], rtol=1e-10,
                         atol=1e-13)


@pytest.mark.parametrize("name", CELLS)
def test_an_ensemble_of_weights_and_nested_vmap(name):
    """Mapped weights fall back to vmap's generic rule (``attnrnn._batching``)."""
    run, params, xs, _, _ = setup(name)
    ensemble = jax.tree.map(lambda w: jnp.stack([w, 0.5 * w]), params)

    def total(backward, ps):
        one = lambda p, x: run(p, x, backward=backward)  # noqa: E731
        return jnp.sum(jnp.cos(jax.vmap(jax.vmap(one, (None, 0)), (0, None))(ps, xs)))

    np.testing.assert_allclose(total("fused", ensemble), total("autodiff", ensemble),
                               rtol=1e-12)
    assert_tree_allclose(jax.grad(partial(total, "fused"))(ensemble),
                         jax.grad(partial(total, "autodiff"))(ensemble), rtol=1e-10)


@pytest.mark.parametrize("name", CELLS)
def test_wide_inputs_and_a_recurrent_matrix_in_row_blocks(name, monkeypatch):
    """With ``IN_LOOP_FEATURES`` features a forward call projects inside the step; with
    ``gates · m · m`` over ``BLOCK`` entries ``W_h`` enters the kernel as row blocks (GRU at
    m = 80: 204 and 36 rows). Values, and gradients of a batch (steps read in place), equal
    autodiff's."""
    monkeypatch.setattr(_cell_kernel, "SMALL_STEP", 0)
    m = 80
    gates = {"gru": 3, "lstm": 4}[name]
    assert len(_batching.row_blocks(jnp.zeros((gates * m, m)))) == 2
    run, params, xs, states, masks = setup(name, n=_cell_kernel.IN_LOOP_FEATURES, m=m, T=5,
                                           batch=2)

    def forward(backward):
        return jax.vmap(lambda x, s, mk: run(params, x, initial_state=s, mask=mk,
                                             backward=backward))(xs, states, masks)

    assert_tree_allclose(jax.jit(lambda: forward("fused"))(), forward("autodiff"), rtol=1e-12,
                         atol=1e-14)

    def loss(backward, p):
        hs = jax.vmap(lambda x, s, mk: run(p, x, initial_state=s, mask=mk,
                                           backward=backward))(xs, states, masks)
        return jnp.sum(hs ** 2)

    assert_tree_allclose(jax.grad(partial(loss, "fused"))(params),
                         jax.grad(partial(loss, "autodiff"))(params), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", CELLS)
def test_an_empty_sequence(name, layout):
    """No step: the outputs are empty, the final state is the initial one, and its gradient
    reaches the initial state."""
    run, params, xs, states, _ = setup(name, T=0)

    def final(backward, s):
        return jax.vmap(lambda x, s: run(params, x, initial_state=s, backward=backward,
                                         return_state=True))(xs, s)

    hs, last = final("fused", states)
    assert hs.shape == (3, 0, 5)
    assert_tree_allclose(last, states)
    grads = {b: jax.grad(lambda s, b=b: jnp.sum(jnp.sin(jax.tree.leaves(final(b, s)[1])[0])))(
        states) for b in ("fused", "autodiff")}
    assert_tree_allclose(grads["fused"], grads["autodiff"], rtol=1e-12)


@pytest.mark.parametrize("name", CELLS)
def test_fused_is_the_default_and_the_application_keeps_autodiff(name):
    """``ar.gru``/``ar.lstm`` default to the fused pass (forward mode through it is refused,
    naming the fix); the application's GRU and LSTM run ``backward="autodiff"``, the pass its
    recorded results were measured with, so forward mode goes through them."""
    from attnrnn.train.models import make_model

    run, params, xs, _, _ = setup(name)
    with pytest.raises(TypeError, match="pass backward='autodiff'"):
        jax.jvp(lambda p: run(p, xs[0]), (params,), (params,))
    model = make_model(name, input_size=3, hidden_size=5, outputs=2)
    weights = model.init(jax.random.PRNGKey(0))
    jax.jvp(lambda w: model.apply(w, xs[0]), (weights,), (weights,))
