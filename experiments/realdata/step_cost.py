"""The cost of AttentionRNN(∞)'s training default (and of the eight-head recipe before it)
against the one-head bounded model, on GunPoint (T 150) with every default of
``attnrnn train --data`` (batch 32, hidden 32): the training step as ``fit`` runs it (a chunk
of 20 steps on device: batches drawn, loss, gradient, clipped Adam update, each model with the
backward pass the application gives it: the default's hand-written kernel,
``attnrnn._attention_kernel``), and the cell's gradient alone (of the last states' squares,
``[x, 1]`` inputs) by autodiff with ``lax.scan``'s unroll 1, 2 and 4, and by the kernel where
it applies. Each candidate is timed in turn in one process (``benchmarks/common.py``).

    python experiments/realdata/step_cost.py
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import attnrnn as ar
from attnrnn.attention import has_fused_kernel
from attnrnn.train import TrainConfig, build_run, make_train_chunk, new_train_state, parse_model
from attnrnn.train.cells import _with_bias_input  # the [x, 1] the default's cell reads

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
from common import interleaved_seconds  # noqa: E402

# The training default as ``--data`` resolves it (hidden 32: 32 heads), and before it, the
# eight-head recipe this file measured first (LOG.md).
DEFAULT = TrainConfig(data=str(HERE / "data" / "GunPoint.npz"), model="attention:inf").resolve()
MODELS = {"one head, bounded (attention:inf,qk=0.7)": "attention:inf,qk=0.7",
          "the default (one head per channel)": DEFAULT.model,
          "eight heads (the default before)": "attention:inf,raw,nonexp,v=2,scale=0.35,cap=5,"
                                              "heads=8,recency=0/0.01/0.03/0.1/0.3/0.5/1/2,bias"}


def training_steps():
    """Per-step seconds of 20-step chunks of each model's training run."""
    chunks = {}
    for name, model in MODELS.items():
        run = build_run(TrainConfig(data=str(HERE / "data" / "GunPoint.npz"), model=model))
        chunk = jax.jit(make_train_chunk(run.optimizer, run.task, run.model, batch_size=32,
                                         steps_per_chunk=20))
        state, train = new_train_state(run), run.task.train
        chunks[name] = lambda chunk=chunk, state=state, train=train: chunk(
            jax.tree.map(jnp.copy, state), train)[1]
    for name, (seconds, ratio) in interleaved_seconds(chunks, rounds=7).items():
        print(f"training step, {name:40s} {seconds / 20 * 1e3:7.2f} ms  first / this "
              f"{ratio:.2f}")


def main():
    training_steps()
    xs = jnp.asarray(np.load(HERE / "data" / "GunPoint.npz")["x_train"][:32])
    xs = _with_bias_input(xs)
    params = ar.attention_rnn_init(jax.random.PRNGKey(0), xs.shape[-1], 32, k=None)
    candidates = {}
    for name, model in MODELS.items():
        options = parse_model(model).options
        kernel = has_fused_kernel(params, k=None, options=options)
        for unroll, backward in ((1, "autodiff"), (2, "autodiff"), (4, "autodiff"),
                                 *([(1, "fused")] if kernel else [])):
            def loss(p, options=options, unroll=unroll, backward=backward):
                hs = jax.vmap(lambda x: ar.attention_rnn(p, x, k=None, options=options,
                                                         unroll=unroll, backward=backward))(xs)
                return jnp.sum(hs[:, -1] ** 2)
            label = "the kernel" if backward == "fused" else f"autodiff, unroll {unroll}"
            candidates[f"{name}, {label}"] = jax.jit(jax.grad(loss))
    for name, (seconds, ratio) in interleaved_seconds(candidates, params, rounds=7).items():
        print(f"{name:62s} {seconds * 1e3:7.2f} ms  first / this {ratio:.2f}")


if __name__ == "__main__":
    main()
