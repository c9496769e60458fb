import dataclasses

import jax.numpy as jnp
import pytest

from attnrnn import train
from attnrnn.train import config as config_module


def test_config_validation():
    with pytest.raises(ValueError, match="steps must be a positive int"):
        train.TrainConfig(steps=0)
    with pytest.raises(ValueError, match="hidden"):
        train.TrainConfig(hidden=-3)
    with pytest.raises(ValueError, match="lr"):
        train.TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="optimizer"):
        train.TrainConfig(optimizer="adagrad")
    with pytest.raises(ValueError, match="model must be"):
        train.TrainConfig(model="transformer")
    with pytest.raises(ValueError, match="task must be"):
        train.TrainConfig(task="copying")



def test_none_is_the_default_and_resolve_fills_it_once():
    """A field left None takes the defaults table's value for the model on the task; a value
    given wins; resolving twice changes nothing."""
    given = train.TrainConfig(model="lstm1997", steps=30)
    assert given.batch is None and given.steps == 30
    resolved = given.resolve()
    assert (resolved.optimizer, resolved.lr, resolved.clip, resolved.batch, resolved.hidden,
            resolved.steps) == ("sgd", 0.5, train.NO_CLIP, 1, 4, 30)
    assert resolved.resolve() is resolved
    assert all(getattr(resolved, name) is not None for name in config_module._DEFAULTED)
    # on MNIST-1D the benchmark's protocol, then the model's best configuration and options
    mnist = train.TrainConfig(task="mnist1d", model="attention:inf").resolve()
    assert (mnist.model, mnist.batch, mnist.clip, mnist.hidden, mnist.layers, mnist.position,
            mnist.readout) == (
        "attention:inf,raw,nonexp,v=2,cap=5,heads=8,recency=0/0.01/0.03/0.1/0.2/0.3/0.6/1", 100,
        "none", 32, 1, False, "last")
    named = train.TrainConfig(task="mnist1d", model="attention:inf,raw").resolve()
    assert named.model == "attention:inf,raw" and named.hidden == 32  # its options, kept
    # AttentionRNN(∞) named alone runs its heads-and-recency recipe (MNIST-1D aside, above):
    # one head per channel of the state, whatever its size
    for task in ("temporal-order", "adding"):
        assert train.TrainConfig(task=task, model="attention:inf").resolve().model == (
            "attention:inf,raw,nonexp,v=2,scale=0.35,cap=5,heads=32,recency=log/0.003/5,bias")
    for hidden in (1, 2, 30):
        odd = train.TrainConfig(model="attention:inf", hidden=hidden).resolve()
        heads = train.parse_model(odd.model).options
        assert heads.heads == hidden and len(heads.recency) == hidden and heads.recency[0] == 0
    with pytest.raises(ValueError, match="options.heads=8 must divide the state size m=30.*"
                       "attention:inf named alone is attention:inf,raw,.*heads=8.*name its"):
        train.TrainConfig(task="mnist1d", model="attention:inf", hidden=30)
    assert train.TrainConfig(task="mnist1d,shuffle", model="attention:3").resolve().readout == "all"
    assert train.TrainConfig(clip="none").resolve().clip == "none"
    assert train.TrainConfig(clip=0.5).make_optimizer() is not None


def test_defaults_rows_apply_by_task_family_and_model_name():
    assert train.training_defaults("attention:2", "mnist1d,shuffle")["readout"] == "all"
    assert train.training_defaults("attention:inf,raw", "mnist1d")["options"] == (
        config_module.ATTENTION_INF_MNIST1D)
    assert train.training_defaults("gated,offset=0", "mnist1d")["hidden"] == 16
    assert train.training_defaults("gated")["hidden"] == 32
    assert set(config_module._DEFAULTED) <= {f.name for f in dataclasses.fields(train.TrainConfig)}


def test_run_options_are_keywords_made_one_value():
    assert train.loop.run_options({"progress": False, "max_seconds": 3}) == train.RunOptions(
        progress=False, max_seconds=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'progess'"):
        train.fit(train.TrainConfig(steps=1), progess=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'options'"):  # one way
        train.fit(train.TrainConfig(steps=1), options=train.RunOptions(progress=False))
    with pytest.raises(ValueError, match="checkpoint_every must be a positive int"):
        train.loop.run_options({"checkpoint_every": 0})


def test_no_clipping_is_one_value_none_is_not_one():
    """``NO_CLIP`` ("none") is no clipping everywhere; ``None`` is only a config's "default"."""
    grads = {"w": jnp.array(100.0)}
    for clip, step in ((train.NO_CLIP, -100.0), (1.0, -1.0)):
        optimizer = train.make_optimizer("sgd", 1.0, clip)
        updates, _ = optimizer.update(grads, optimizer.init(grads))
        assert float(updates["w"]) == pytest.approx(step)
    with pytest.raises(ValueError, match="clip must be a positive number, or 'none'"):
        train.make_optimizer("sgd", 1.0, None)
    assert train.TrainConfig(clip=None).resolve().clip == 1.0  # the default's


def test_a_config_builds_nothing_and_a_run_is_built_once(tmp_path):
    """Making a config loads and builds nothing (a missing file is a fine value); build_run
    builds the task, model, optimizer and protocol once, and fit trains what it built."""
    missing = train.TrainConfig(data=str(tmp_path / "missing.npz"))
    with pytest.raises(train.DataError, match="missing.npz"):
        train.build_run(missing)
    config = train.TrainConfig(level="easy", steps=2, eval_every=2, hidden=4, heldout=64)
    run = train.build_run(config)
    assert run.config == config.resolve() and run.task.name == "temporal-order"
    state, history, summary = train.fit(run, progress=False)
    assert int(state.step) == 2 and summary["model"] == run.model.name
    with pytest.raises(ValueError, match="a Run is trained as it was built"):
        train.fit(run, model=run.model, progress=False)
    with pytest.raises(ValueError, match="a Run is trained as it was built"):
        train.fit(run, stop_when_solved=True, progress=False)
