"""attnrnn: strided/dilated convolution, a gated RNN and AttentionRNN(k)/(∞) as pure JAX
functions over pytrees. Every function works on one example; batch with ``jax.vmap``."""

from attnrnn.attention import (
    AttentionRNNParams,
    OnlineSoftmaxState,
    WindowState,
    attention_rnn,
    attention_rnn_cell,
    attention_rnn_init,
    attention_rnn_initial_state,
    attention_rnn_jacobian,
    attention_rnn_step,
    bounded_params,
)
from attnrnn.bounds import AttentionOptions
from attnrnn.conv import (
    ConvParams,
    conv,
    conv_init,
    conv_input_grad,
    conv_output_shape,
    conv_weight_grad,
)
from attnrnn.loop import run
from attnrnn.gru import GRUParams, gru, gru_cell, gru_init, gru_initial_state
from attnrnn.lstm import LSTMParams, lstm, lstm_cell, lstm_init, lstm_initial_state
from attnrnn.lstm1997 import (LSTM1997Params, lstm1997, lstm1997_cell, lstm1997_init,
                              lstm1997_initial_state)
from attnrnn.spectral import spectral_norm
from attnrnn.gated import (
    GatedRNNParams,
    gated_rnn,
    gated_rnn_cell,
    gated_rnn_init,
    gated_rnn_initial_state,
    gated_rnn_jacobian,
    gated_rnn_step,
)

__version__ = "0.1.0"

__all__ = [
    "AttentionOptions",
    "AttentionRNNParams",
    "ConvParams",
    "GRUParams",
    "GatedRNNParams",
    "LSTM1997Params",
    "LSTMParams",
    "OnlineSoftmaxState",
    "WindowState",
    "attention_rnn",
    "attention_rnn_cell",
    "attention_rnn_init",
    "attention_rnn_initial_state",
    "attention_rnn_jacobian",
    "attention_rnn_step",
    "bounded_params",
    "conv",
    "conv_init",
    "conv_input_grad",
    "conv_output_shape",
    "conv_weight_grad",
    "gated_rnn",
    "gated_rnn_cell",
    "gated_rnn_init",
    "gated_rnn_initial_state",
    "gated_rnn_jacobian",
    "gated_rnn_step",
    "gru",
    "gru_cell",
    "gru_init",
    "gru_initial_state",
    "lstm",
    "lstm1997",
    "lstm1997_cell",
    "lstm1997_init",
    "lstm1997_initial_state",
    "lstm_cell",
    "lstm_init",
    "lstm_initial_state",
    "run",
    "spectral_norm",
]
