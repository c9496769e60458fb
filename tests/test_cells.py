import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attnrnn.train import cells, model_spec


@pytest.mark.parametrize("name", cells.CELLS)
def test_each_entry_owns_its_name_string_and_run(name):
    """An entry is a frozen value named in the registry by its model string's cell; its
    default parses back from its string, and (a recurrence) its init and run give states of
    its width."""
    entry = cells.CELLS[name]()
    assert entry.name == name and model_spec.parse_model(str(entry)) == entry
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.__setattr__("x", 1)
    if not entry.recurrent:
        return
    params = entry.init(jax.random.PRNGKey(0), 3, 8, False, jnp.float32)
    xs = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    hs = jax.jit(lambda p, x: entry.run(p, x, None, False))(params, xs)
    assert hs.shape == (5, entry.width(params)) and bool(jnp.isfinite(hs).all())


def test_entries_are_values_of_their_class():
    """Two entries are equal when their class and options are (entries without options do
    not compare as empty tuples would), so a Model holding one is a sound jit static."""
    specs = [cells.LSTM(), cells.GRU(), cells.Conv(), cells.Gated(), cells.Gated(0.0),
             cells.Attention(None), cells.Attention(2), cells.LSTM1997(),
             cells.LSTM1997(truncated=True)]
    assert len(set(specs)) == len(specs)
    assert cells.Attention(None) == cells.Attention(None, cells.BOUNDED, False)


def test_an_entry_checks_its_options_when_made():
    """Options of the wrong kind are refused by name when the entry is made, not later."""
    for make, match in ((lambda: cells.Gated(offset="2"), "offset must be a number"),
                        (lambda: cells.Gated(offset=float("nan")), "offset must be a finite"),
                        (lambda: model_spec.parse_model("gated,offset=inf"),
                         "offset must be a finite number, got inf"),
                        (lambda: cells.Attention(k=-1), "k must be"),
                        (lambda: cells.Attention(None, options="raw"), "options must be"),
                        (lambda: cells.Attention(None, options=None), "RAW for the homework"),
                        (lambda: cells.Attention(None, bias=1), "bias must be"),
                        (lambda: cells.LSTM1997(truncated="yes"), "truncated must be")):
        with pytest.raises((TypeError, ValueError), match=match):
            make()
    assert cells.Gated(offset=0) == cells.Gated(0.0) == cells.Gated(np.float32(0.0))
    assert str(cells.Gated(offset=0)) == "gated,offset=0"
