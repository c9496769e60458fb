import jax
import jax.numpy as jnp
import numpy as np

from attnrnn._batching import batch_aware, join_blocks, row_blocks, split_like


def make():
    """A per-example ``W @ x + b`` whose batched form records the batch sizes it saw."""
    seen = []

    def batched(W, x, b):
        seen.append(x.shape[0])
        return x @ W.T + b, jnp.sum(x, axis=1)

    return batch_aware(batched), seen


def test_unbatched_is_a_batch_of_one():
    f, seen = make()
    W, x, b = jnp.ones((2, 3)), jnp.arange(3.0), jnp.array([1.0, -1.0])
    y, total = f(W, x, b)
    np.testing.assert_allclose(y, W @ x + b)
    assert total.shape == () and seen == [1]


def test_vmap_runs_the_batched_form_once_and_broadcasts_unmapped_arguments():
    f, seen = make()
    W, xs, b = jnp.ones((2, 3)), jnp.arange(12.0).reshape(4, 3), jnp.array([1.0, -1.0])
    y, total = jax.vmap(f, (None, 0, None))(W, xs, b)
    np.testing.assert_allclose(y, np.asarray(xs) @ np.asarray(W).T + np.asarray(b))
    np.testing.assert_allclose(total, xs.sum(1))
    # custom_vmap traces the per-example form (a batch of one) once; vmap then runs the
    # batched form once on all 4 examples.
    assert seen == [1, 4]


def test_mapped_shared_weights_fall_back_to_one_call_per_example():
    f, seen = make()
    Ws = jnp.stack([jnp.ones((2, 3)), 2 * jnp.ones((2, 3))])
    x, b = jnp.arange(3.0), jnp.zeros(2)
    y, _ = jax.jit(jax.vmap(f, (0, None, None)))(Ws, x, b)
    np.testing.assert_allclose(y, np.stack([W @ x for W in Ws]))
    assert set(seen) == {1}  # only ever one example: vmap's generic rule batched it


def test_row_blocks_split_and_join():
    """A weight matrix as row blocks of at most BLOCK entries (one block below it), joined
    back, and a per-example gradient split like them."""
    W = jnp.arange(300 * 100, dtype=jnp.float32).reshape(300, 100)
    blocks = row_blocks(W)
    assert [b.shape for b in blocks] == [(163, 100), (137, 100)]
    np.testing.assert_array_equal(join_blocks(blocks), W)
    per_example = jnp.stack([W, -W])
    assert [b.shape for b in split_like(per_example, blocks)] == [(2, 163, 100), (2, 137, 100)]
    assert len(row_blocks(jnp.zeros((96, 32)))) == 1
