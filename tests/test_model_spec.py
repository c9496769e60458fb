import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnrnn.bounds import AttentionOptions
from attnrnn.train import cells, model_spec


def test_parse_model():
    assert model_spec.parse_model("attention:inf") == cells.Attention(None, model_spec.BOUNDED)
    assert str(model_spec.parse_model("attention:3")) == "attention:3"
    assert model_spec.parse_model("gated") == cells.Gated(2.0) and str(model_spec.parse_model("gated")) == "gated"
    assert model_spec.parse_model("gated,offset=0") == cells.Gated(offset=0.0)
    assert str(model_spec.parse_model("gated,offset=0.5")) == "gated,offset=0.5"
    for text, truncated, logistic in [("lstm1997", False, False),
                                      ("lstm1997,truncated", True, False),
                                      ("lstm1997,logistic", False, True),
                                      ("lstm1997,truncated,logistic", True, True)]:
        spec = model_spec.parse_model(text)
        assert spec == cells.LSTM1997(truncated, logistic) and str(spec) == text
    assert str(model_spec.parse_model("lstm1997,logistic,truncated")) == "lstm1997,truncated,logistic"
    assert str(model_spec.parse_model("gru")) == "gru" and str(model_spec.parse_model("conv")) == "conv"
    for bad in ["attention", "attention:-1", "gru:2", "conv,raw", "gated:2", "attention:x", "gated,offset=x",
                "gated,norm", "lstm,offset=1", "lstm1997,raw", "lstm1997,truncated,truncated",
                "lstm1997:2", "lstm,logistic"]:
        with pytest.raises(ValueError, match="model must be"):
            model_spec.parse_model(bad)
    for bad in ["attention:2,offset=1", "attention:inf,scale=x", "attention:2,cap",
                "attention:inf,heads=0", "attention:inf,heads=x", "attention:inf,recency=-1",
                "attention:inf,recency=1/x", "attention:inf,recency=inf", "attention:inf,cap=inf",
                "attention:2,qk=nan", "attention:inf,heads=4,recency=log/1",
                "attention:inf,heads=4,recency=log/2/1", "attention:inf,heads=4,recency=log/0/1",
                "attention:inf,heads=4,recency=log/1/inf", "attention:inf,heads=4,recency=log"]:
        with pytest.raises(ValueError, match="model option .* is not one of"):
            model_spec.parse_model(bad)
    headed = model_spec.parse_model("attention:inf,heads=4,recency=0/0.5/1/2")
    assert (headed.options.heads, headed.options.recency) == (4, (0.0, 0.5, 1.0, 2.0))
    assert str(headed) == "attention:inf,raw,nonexp,qk=0.7,v=2,heads=4,recency=0/0.5/1/2"
    with pytest.raises(ValueError, match="recency in .* has 2 rates for 4 heads: give one rate "
                                         "per head"):
        model_spec.parse_model("attention:inf,heads=4,recency=0/1")
    # log/LOW/HIGH: 0, then heads - 1 rates evenly spaced in log from LOW to HIGH
    spread = model_spec.parse_model("attention:inf,heads=5,recency=log/0.01/10")
    assert spread.options.recency == pytest.approx((0.0, 0.01, 0.1, 1.0, 10.0), rel=1e-12)
    assert spread.options.recency[1:5:3] == (0.01, 10.0)  # the ends as written
    assert str(spread) == "attention:inf,raw,nonexp,qk=0.7,v=2,heads=5,recency=log/0.01/10"
    assert [cells.log_rates(h, 0.5, 2) for h in (1, 2, 3)] == [(0.0,), (0.0, 0.5),
                                                               (0.0, 0.5, 2.0)]



numbers = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def specs(draw):
    """Any entry the strings can say: each cell with its options."""
    cell = draw(st.sampled_from(model_spec.cell_names()))
    if cell == "attention":
        options = AttentionOptions(
            score_scale=draw(st.one_of(st.just(1.0), numbers)),
            score_cap=draw(st.one_of(st.none(), numbers)),
            normalize_states=draw(st.booleans()), nonexpansive=draw(st.booleans()),
            score_bound=draw(st.one_of(st.none(), numbers)),
            value_bound=draw(st.one_of(st.none(), numbers)))
        heads = draw(st.integers(1, 8))
        low, high = sorted(draw(st.tuples(numbers, numbers)))
        options = options._replace(heads=heads, recency=draw(st.one_of(
            st.none(), st.tuples(*[st.one_of(st.just(0.0), numbers)] * heads),
            st.just(cells.log_rates(heads, low, high)))))
        options = draw(st.sampled_from([options, model_spec.BOUNDED, model_spec.RAW]))
        return cells.Attention(draw(st.one_of(st.none(), st.integers(0, 64))), options,
                               bias=draw(st.booleans()))
    if cell == "gated":
        return cells.Gated(offset=draw(st.floats(-1e3, 1e3)))
    if cell == "lstm1997":
        return cells.LSTM1997(truncated=draw(st.booleans()), logistic=draw(st.booleans()))
    return cells.CELLS[cell]()


@given(specs())
def test_every_spec_round_trips_through_its_string(spec):
    """str then parse gives the same spec, and parse then str the same string."""
    text = str(spec)
    assert model_spec.parse_model(text) == spec
    assert str(model_spec.parse_model(text)) == text
