"""Data parallelism over 4 simulated CPU devices, in a subprocess (the device count is fixed
when JAX starts)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from attnrnn import train as training
    from attnrnn.train import tasks
    assert len(jax.devices()) == 4
    config = training.TrainConfig(level="easy", hidden=8, steps=40, batch=32, lr=1e-2,
                                  eval_every=10, heldout=256)
    one, _, summary_one = training.fit(config, progress=False, devices=1)
    four, _, summary_four = training.fit(config, progress=False, devices=4)
    assert summary_one["devices"] == 1 and summary_four["devices"] == 4
    assert jax.tree.structure(one.params) == jax.tree.structure(four.params)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
        assert len(b.sharding.device_set) == 4 and b.sharding.is_fully_replicated
    # The batch is split: each device holds a quarter of it.
    mesh = training.data_parallel_mesh(4)
    xs, labels, mask = training.shard_batch(tasks.temporal_order(jax.random.PRNGKey(0), 32,
                                                                 level="easy"), mesh)
    assert {s.data.shape for s in xs.addressable_shards} == {(8, 8, 8)}
    assert len({s.device for s in xs.addressable_shards}) == 4
    # ... and so it is inside the compiled training chunk: gradients are all-reduced.
    task = tasks.make_task("temporal-order", level="easy")
    model, optimizer = config.build_model(task), training.make_optimizer("adam", 1e-2, 1.0)
    chunk = training.make_train_chunk(optimizer, task, model,
                                      batch_size=32, steps_per_chunk=2, mesh=mesh)
    state = training.replicate(training.new_train_state(training.build_run(config)), mesh)
    assert "all-reduce" in chunk.lower(state).compile().as_text()
    try:
        training.make_train_chunk(optimizer, task, model,
                                  batch_size=30, steps_per_chunk=2, mesh=mesh)
    except ValueError as error:
        assert "does not split evenly over 4 devices" in str(error)
    else:
        raise AssertionError("a batch of 30 on 4 devices was accepted")
    print("OK")
""")


def test_four_devices_match_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


DEVICES_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import jax
    from attnrnn.train import cli
    assert len(jax.devices()) == 4
    out = Path(sys.argv[1])
    run = ["train", "--level", "easy", "--hidden", "8", "--steps", "20", "--eval-every", "10",
           "--heldout", "256", "--no-progress"]
    # By default as many devices as the batch splits over: 6 sequences on 3 of the 4.
    assert cli.main([*run, "--batch", "6", "--out", str(out / "six")]) == 0
    assert json.loads((out / "six" / "summary.json").read_text())["devices"] == 3
    # Asked for 4, a batch of 6 is refused, naming --devices.
    assert cli.main([*run, "--batch", "6", "--devices", "4", "--out", str(out / "no")]) == 2
    # A run on all 4, for the test to resume on one device.
    assert cli.main([*run, "--out", str(out / "four")]) == 0
    assert json.loads((out / "four" / "summary.json").read_text())["devices"] == 4
""")


def test_device_count_follows_the_batch_and_runs_move_between_machines(tmp_path, capsys):
    """The default device count is one the batch splits over; a split error names --devices;
    a run made on 4 devices resumes (and its parameters load) in a process with one."""
    import json

    import jax

    from attnrnn.train import TrainConfig, cli, run
    from attnrnn.train.checkpoints import load_params

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", DEVICES_SCRIPT, str(tmp_path)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fewer devices (--devices, devices=)" in result.stderr
    assert len(jax.devices()) == 1
    four = tmp_path / "four"
    config = TrainConfig(**json.loads((four / "config.json").read_text())["config"])
    params = load_params(four / "params", config.build_model().init(jax.random.PRNGKey(0)))
    assert all(len(leaf.sharding.device_set) == 1 for leaf in jax.tree.leaves(params))
    assert cli.main(["train", "--resume", str(four), "--steps", "30", "--no-progress"]) == 0
    assert [r["step"] for r in run.read_metrics(four)] == list(range(31))
    assert json.loads((four / "summary.json").read_text())["devices"] == 1
