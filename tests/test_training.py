import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attnrnn import train as training
from attnrnn.train import models, tasks
from helpers import assert_tree_equal


def small_state(optimizer=None, spec="gated"):
    task = tasks.make_task("temporal-order", level="easy")
    model = models.model_for(spec, task, 8)
    params = model.init(jax.random.PRNGKey(0))
    optimizer = optimizer or training.make_optimizer("adam", 1e-2, 1.0)
    return task, optimizer, model, training.init_train_state(jax.random.PRNGKey(1), params,
                                                             optimizer)


def test_short_run_solves_easy_level():
    config = training.TrainConfig(level="easy", steps=300, hidden=16, lr=1e-2, heldout=512)
    state, history, summary = training.fit(config, progress=False)
    assert summary["heldout_accuracy"] >= 0.95
    assert summary["steps"] == 300 and summary["sequences_seen"] == 300 * 32
    assert abs(summary["initial_loss"] - np.log(4)) < 0.05
    steps = [r["step"] for r in history]
    assert steps == list(range(301))  # step 0 is the untrained evaluation; no gap, no repeat
    assert all({"loss", "accuracy", "grad_norm", "sequences_seen"} <= r.keys()
               for r in history[1:])


def test_fit_copies_the_state_it_continues_from():
    # Tied leaves (one buffer twice) cannot be donated to a chunk as they are, and the
    # caller's state must survive the run.
    config = training.TrainConfig(level="easy", steps=4, eval_every=2, hidden=8, heldout=64)
    state = training.new_train_state(training.build_run(config))
    cell = state.params.cell
    tied = state._replace(params=state.params._replace(cell=cell._replace(W_x=cell.W_c)))
    before = jax.tree.map(np.asarray, tied)
    trained, _, summary = training.fit(config, state=tied, progress=False)
    assert summary["steps"] == 4 and int(trained.step) == 4
    assert_tree_equal(jax.tree.map(np.asarray, tied), before)


def test_non_finite_batch_is_skipped_and_counted():
    task, optimizer, model, state = small_state()
    step = training.make_train_step(optimizer, model)
    batch = task.sample(jax.random.PRNGKey(2), 16)
    state, metrics = step(state, batch)
    assert not bool(metrics["skipped"])
    before = state.params
    poisoned = (batch[0].at[3, -1, 0].set(jnp.nan), *batch[1:])
    state, metrics = step(state, poisoned)
    assert bool(metrics["skipped"]) and not np.isfinite(float(metrics["grad_norm"]))
    assert_tree_equal(state.params, before)
    assert int(training.skipped_updates(state)) == 1
    state, metrics = step(state, batch)
    assert not bool(metrics["skipped"]) and int(training.consecutive_skips(state)) == 0
    assert int(training.skipped_updates(state)) == 1 and int(state.step) == 3


def test_any_optax_transformation_works():
    task, optimizer, model, state = small_state(optax.chain(optax.clip(0.5), optax.sgd(0.1, 0.9)))
    state, metrics = training.make_train_step(optimizer, model)(
        state, task.sample(jax.random.PRNGKey(0), 8))
    assert np.isfinite(float(metrics["loss"]))


def test_train_chunk_compiles_once():
    task, optimizer, model, state = small_state()
    chunk = training.make_train_chunk(optimizer, task, model, batch_size=8,
                                      steps_per_chunk=5)
    for _ in range(4):
        state, metrics = chunk(state)
    assert metrics["loss"].shape == (5,)
    assert int(state.step) == 20
    assert chunk._cache_size() == 1


def test_evaluation_is_fixed_across_runs():
    task = tasks.make_task("temporal-order", level="easy")
    a, b = training.heldout_set(task, 64), training.heldout_set(task, 64)
    np.testing.assert_array_equal(a[0], b[0])


def test_run_stops_after_consecutive_non_finite_gradients():
    easy = tasks.make_task("temporal-order", level="easy")

    def poisoned(key, batch_size):
        xs, labels, mask = easy.sample(key, batch_size)
        return xs * jnp.nan, labels, mask

    task = easy._replace(sample=poisoned)
    config = training.TrainConfig(level="easy", steps=200, hidden=4, eval_every=5, max_skips=10,
                                  heldout=64)
    state, history, summary = training.fit(config, progress=False, task=task)
    assert summary["stop_reason"].startswith("stopped: 10 consecutive non-finite")
    assert summary["skipped_updates"] == int(state.step) == 10
    fresh = training.new_train_state(training.build_run(config, task=task))
    assert_tree_equal(state.params, fresh.params)  # the last good state: nothing was applied


@pytest.mark.parametrize("model", ["attention:inf", "attention:2"])
def test_attention_defaults_never_skip_an_update(model):
    """The training default (bounded AttentionRNN, default lr): no non-finite gradient over a
    few hundred steps for several seeds (side by side: one compile), nor on the longest
    sequences; the homework's raw model with the same settings blows up within 60 steps
    (seed 0: first skip at step 29)."""
    for level, steps, seeds in (("hard", 200, (0, 1, 2)), ("nightmare", 20, (0,))):
        config = training.TrainConfig(level=level, model=model, steps=steps, protocol="1997")
        trials = training.fit_trials(config, seeds)
        assert [t["skipped_updates"] for t in trials] == [0] * len(seeds), level
    if model == "attention:inf":
        raw = training.TrainConfig(level="moderate", model=f"{model},raw", steps=60, heldout=64)
        assert raw.resolve().lr == config.resolve().lr
        _, _, summary = training.fit(raw, progress=False)
        assert summary["skipped_updates"] > 0
