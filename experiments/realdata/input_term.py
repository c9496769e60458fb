"""Probe: AttentionRNN(∞) whose input term reads the last state as well as the input.

In the library's AttentionRNN(∞) the input term's score and value are functions of ``x[t]``
alone (``w_0 = (Q_x x)ᵀ(K_x x)``, ``v_0 = V_x x``): nothing in a step lets the input be read
in the light of the state, as a gated RNN's candidate ``tanh(W x + U h)`` is. The input term is
computed once, at its own step, so any function of ``(x[t], h[t-1])`` keeps the online softmax
exact and the carry O(m). This probe asks whether that would close the gap to the gated RNN
on GunPoint and ArrowHead before anything is built into the library:

- ``control``: the training default's model then (``RECIPE``: its weights, bounds, heads,
  recency, scale, cap and readout from the library), run by the online softmax written here —
  checked equal to the library's on real sequences first;
- ``candidate``: the input term's value ``tanh(V_x' [x, 1] + U h[t-1])`` (an Elman candidate,
  each coordinate in ``(-1, 1)``);
- ``candidate+score``: the same, and the input term's query and key read the state too,
  ``q_0 = Q_x [x, 1] + Q_u h[t-1]`` (``k_0`` alike).

Trained by the library's ``fit`` (``model=``, a ``FunctionModel``) with every default of
``attnrnn train --data FILE.npz``.

    python experiments/realdata/input_term.py candidate --sets GunPoint ArrowHead --seeds 0 1 2
"""

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from attnrnn import bounded_params
from attnrnn.attention import _per_head, _score  # the library's scoring and mixing, per head
from attnrnn.train import FunctionModel, TrainConfig, batch_loss, fit, parse_model
from attnrnn.train.cells import _with_bias_input  # the [x, 1] the default's cell reads

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import to_npz  # noqa: E402  (the same .npz files)

# The training default when this probe ran (LOG.md): eight heads; one per channel since.
RECIPE = ("attention:inf,raw,nonexp,v=2,scale=0.35,cap=5,heads=8,"
          "recency=0/0.01/0.03/0.1/0.3/0.5/1/2,bias")
VARIANTS = ("control", "candidate", "candidate+score")


def states(cell, extra, xs, options, variant):
    """Every state ``(T, m)`` of one unmasked sequence by the online softmax, head by head."""
    p = bounded_params(cell, options)
    xs = _with_bias_input(xs)
    m, H = p.V_x.shape[0], options.heads
    rates = jnp.asarray(options.recency, xs.dtype)

    def step(carry, x):
        h, top_past, denominator, numerator = carry
        q, k, v = p.Q_x @ x, p.K_x @ x, p.V_x @ x
        if variant != "control":
            v = jnp.tanh(v + extra["U"] @ h)
        if variant == "candidate+score":
            q, k = q + extra["Q_u"] @ h, k + extra["K_u"] @ h
        w0 = _score(q, k, options)
        past_max = top_past - rates
        top = lax.stop_gradient(jnp.maximum(past_max, w0))
        past, now = jnp.exp(past_max - top), jnp.exp(w0 - top)
        normaliser = now + past * denominator
        h = _per_head(normaliser, _per_head(now, v, H) + _per_head(past, numerator, H), H,
                      jnp.divide)
        w_h = _score(p.Q_h[0] @ h, p.K_h[0] @ h, options)
        new_max = lax.stop_gradient(jnp.maximum(past_max, w_h))
        decay, weight = jnp.exp(past_max - new_max), jnp.exp(w_h - new_max)
        numerator = _per_head(decay, numerator, H) + _per_head(weight, p.V_h[0] @ h, H)
        return (h, new_max, denominator * decay + weight, numerator), h

    start = (jnp.zeros(m, xs.dtype), jnp.full(H, -1e30, xs.dtype), jnp.zeros(H, xs.dtype),
             jnp.zeros(m, xs.dtype))
    return lax.scan(step, start, xs)[1]


def probe_model(base, options, variant):
    """``base`` (the library's model of the recipe) with the input term of ``variant``."""

    def init(key):
        model_key, u, q, k = jax.random.split(key, 4)
        m = base.hidden_size
        normal = lambda key, scale: scale * jax.random.normal(key, (m, m)) / m**0.5  # noqa: E731
        return {"model": base.init(model_key),
                "extra": {"U": normal(u, 1.0), "Q_u": normal(q, 0.1), "K_u": normal(k, 0.1)}}

    def apply(params, xs, mask=None):
        if mask is not None:
            raise ValueError("this probe runs unmasked sequences only")
        model = params["model"]
        last = states(model.cell, params["extra"], xs, options, variant)[-1]
        return last @ model.readout.W.T + model.readout.b

    def loss(params, xs, labels, mask=None, tolerance=None):
        return batch_loss(apply, base.predict, params, xs, labels, mask, tolerance)

    return FunctionModel(init, apply, base.predict, loss, f"{RECIPE} (input term: {variant})")


def check_equal_to_the_library(config, base, options):
    """The control's loop gives the library's outputs on the set's first sequences."""
    task = config.make_task()
    params = base.init(jax.random.PRNGKey(0))
    xs = task.train[0][:2]
    ours = jax.vmap(lambda x: states(params.cell, None, x, options, "control")[-1]
                    @ params.readout.W.T + params.readout.b)(xs)
    theirs = jax.vmap(lambda x: base.apply(params, x))(xs)
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-5)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--sets", nargs="+", default=["GunPoint", "ArrowHead"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jsonl", type=Path, default=HERE / "input-term.jsonl")
    args = parser.parse_args(argv)
    options = parse_model(RECIPE).options
    for name in args.sets:
        config = TrainConfig(data=str(to_npz(name, HERE / "data")), model=RECIPE)
        base = config.build_model()
        check_equal_to_the_library(config, base, options)
        model = probe_model(base, options, args.variant)
        accuracies = []
        for seed in args.seeds:
            summary = fit(config.replace(seed=seed), model=model, progress=False)[2]
            accuracies.append(round(100 * summary["test_accuracy"], 1))
            with args.jsonl.open("a") as f:
                f.write(json.dumps({"set": name, "variant": args.variant, "seed": seed,
                                    "acc": accuracies[-1],
                                    "final_loss": summary["final_loss"]}) + "\n")
        print(args.variant, name, accuracies, "mean", round(np.mean(accuracies), 1), flush=True)


if __name__ == "__main__":
    main()
