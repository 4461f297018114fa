"""NumPy reference forward passes of the paper's FEMNIST, CelebA, Shakespeare,
Reddit and MovieLens models (SPEC 7.2), reading their tensors from the flat vector.

Every tensor is sliced from the flat vector at the offsets of SPEC Appendix C, written
out below by hand, and reshaped to its PyTorch shape; the layers follow PyTorch's
definitions on NCHW data in float64 (``Conv2d`` cross-correlation, ``MaxPool2d(2)`` in
floor mode, ``nn.LSTM`` with gate row blocks i, f, g, o and both biases,
``nn.Embedding`` lookups). Shares no code with the simulator.
"""

from __future__ import annotations

import numpy as np

# SPEC Appendix C: (state_dict key, PyTorch shape, start, end).
FEMNIST_LAYOUT = [
    ("conv1.weight", (32, 1, 5, 5), 0, 800),
    ("conv1.bias", (32,), 800, 832),
    ("conv2.weight", (64, 32, 5, 5), 832, 52032),
    ("conv2.bias", (64,), 52032, 52096),
    ("fc1.weight", (512, 3136), 52096, 1657728),
    ("fc1.bias", (512,), 1657728, 1658240),
    ("fc2.weight", (62, 512), 1658240, 1689984),
    ("fc2.bias", (62,), 1689984, 1690046),
]
CELEBA_LAYOUT = [
    ("conv1.weight", (32, 3, 3, 3), 0, 864),
    ("conv1.bias", (32,), 864, 896),
    ("conv2.weight", (32, 32, 3, 3), 896, 10112),
    ("conv2.bias", (32,), 10112, 10144),
    ("conv3.weight", (32, 32, 3, 3), 10144, 19360),
    ("conv3.bias", (32,), 19360, 19392),
    ("conv4.weight", (32, 32, 3, 3), 19392, 28608),
    ("conv4.bias", (32,), 28608, 28640),
    ("fc1.weight", (2, 800), 28640, 30240),
    ("fc1.bias", (2,), 30240, 30242),
]
LSTM_LAYOUT = [
    ("embedding.weight", (92, 8), 0, 736),
    ("lstm.weight_ih_l0", (1024, 8), 736, 8928),
    ("lstm.weight_hh_l0", (1024, 256), 8928, 271072),
    ("lstm.bias_ih_l0", (1024,), 271072, 272096),
    ("lstm.bias_hh_l0", (1024,), 272096, 273120),
    ("lstm.weight_ih_l1", (1024, 256), 273120, 535264),
    ("lstm.weight_hh_l1", (1024, 256), 535264, 797408),
    ("lstm.bias_ih_l1", (1024,), 797408, 798432),
    ("lstm.bias_hh_l1", (1024,), 798432, 799456),
    ("l1.weight", (92, 20480), 799456, 2683616),
    ("l1.bias", (92,), 2683616, 2683708),
]
REDDIT_LAYOUT = [
    ("embedding.weight", (9999, 200), 0, 1999800),
    ("rnn_cells.weight_ih_l0", (1024, 200), 1999800, 2204600),
    ("rnn_cells.weight_hh_l0", (1024, 256), 2204600, 2466744),
    ("rnn_cells.bias_ih_l0", (1024,), 2466744, 2467768),
    ("rnn_cells.bias_hh_l0", (1024,), 2467768, 2468792),
    ("rnn_cells.weight_ih_l1", (1024, 256), 2468792, 2730936),
    ("rnn_cells.weight_hh_l1", (1024, 256), 2730936, 2993080),
    ("rnn_cells.bias_ih_l1", (1024,), 2993080, 2994104),
    ("rnn_cells.bias_hh_l1", (1024,), 2994104, 2995128),
    ("l1.weight", (128, 256), 2995128, 3027896),
    ("l1.bias", (128,), 3027896, 3028024),
    ("l2.weight", (9999, 128), 3028024, 4307896),
    ("l2.bias", (9999,), 4307896, 4317895),
]
MF_LAYOUT = [
    ("user_factors.weight", (610, 20), 0, 12200),
    ("item_factors.weight", (9724, 20), 12200, 206680),
]


def tensors(flat, layout) -> dict[str, np.ndarray]:
    """Slices the flat vector into float64 tensors of their PyTorch shapes."""
    flat = np.asarray(flat, np.float64)
    assert flat.shape == (layout[-1][3],), flat.shape
    return {name: flat[start:end].reshape(shape) for name, shape, start, end in layout}


def conv2d(x, w, b, pad):
    """PyTorch Conv2d, stride 1: x (B, C, H, W), w (O, C, KH, KW), b (O,)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    _, _, kh, kw = w.shape
    ho, wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for dy in range(kh):
        for dx in range(kw):
            patch = x[:, :, dy : dy + ho, dx : dx + wo]
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, dy, dx])
    return out + b[None, :, None, None]


def max_pool(x):
    """PyTorch MaxPool2d(2, 2), floor mode, on (B, C, H, W)."""
    b, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def relu(x):
    return np.maximum(x, 0.0)


def linear(x, w, b):
    return x @ w.T + b


def femnist_forward(flat, x_nhwc):
    """FEMNIST CNN on (B, 28, 28, 1) inputs -> (B, 62) logits."""
    t = tensors(flat, FEMNIST_LAYOUT)
    h = np.asarray(x_nhwc, np.float64).transpose(0, 3, 1, 2)  # NCHW
    h = max_pool(relu(conv2d(h, t["conv1.weight"], t["conv1.bias"], 2)))
    h = max_pool(relu(conv2d(h, t["conv2.weight"], t["conv2.bias"], 2)))
    h = h.reshape(h.shape[0], -1)  # torch.flatten(x, 1): 3136
    h = relu(linear(h, t["fc1.weight"], t["fc1.bias"]))
    return linear(h, t["fc2.weight"], t["fc2.bias"])


def celeba_forward(flat, x_nhwc):
    """CelebA CNN on (B, 84, 84, 3) raw-pixel inputs -> (B, 2) logits."""
    t = tensors(flat, CELEBA_LAYOUT)
    h = np.asarray(x_nhwc, np.float64).transpose(0, 3, 1, 2)
    for i in range(1, 5):
        # padding="same" for a 3x3 kernel is one pixel on every side.
        h = relu(max_pool(conv2d(h, t[f"conv{i}.weight"], t[f"conv{i}.bias"], 1)))
    h = h.reshape(h.shape[0], -1)  # 800
    return linear(h, t["fc1.weight"], t["fc1.bias"])


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def lstm_layer(x_btf, w_ih, w_hh, b_ih, b_hh):
    """One batch_first PyTorch LSTM layer with zero initial state.

    Args:
        x_btf: (B, T, F) inputs.
        w_ih, w_hh, b_ih, b_hh: PyTorch tensors, rows in gate blocks i, f, g, o.

    Returns:
        (B, T, H) outputs.
    """
    b, steps, _ = x_btf.shape
    hidden = w_hh.shape[1]
    h = np.zeros((b, hidden))
    c = np.zeros((b, hidden))
    out = np.zeros((b, steps, hidden))
    for t in range(steps):
        gates = x_btf[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh
        i_gate = _sigmoid(gates[:, 0:hidden])
        f_gate = _sigmoid(gates[:, hidden : 2 * hidden])
        g_cand = np.tanh(gates[:, 2 * hidden : 3 * hidden])
        o_gate = _sigmoid(gates[:, 3 * hidden : 4 * hidden])
        c = f_gate * c + i_gate * g_cand
        h = o_gate * np.tanh(c)
        out[:, t] = h
    return out


def lstm_forward(flat, ids):
    """Shakespeare LSTM on (B, 80) character ids -> (B, 92) logits."""
    t = tensors(flat, LSTM_LAYOUT)
    h = t["embedding.weight"][np.asarray(ids)]  # (B, 80, 8)
    for layer in (0, 1):
        h = lstm_layer(
            h,
            t[f"lstm.weight_ih_l{layer}"],
            t[f"lstm.weight_hh_l{layer}"],
            t[f"lstm.bias_ih_l{layer}"],
            t[f"lstm.bias_hh_l{layer}"],
        )
    h = relu(h.reshape(h.shape[0], -1))  # (B, 20480), index t * 256 + unit
    return linear(h, t["l1.weight"], t["l1.bias"])


def reddit_forward(flat, ids):
    """Reddit RNN on (B, 10) token ids -> (B, 9999) logits.

    The embedding row of every id is read as stored (row 0 included: PyTorch's
    padding_idx only zeroes its gradient), both LSTM layers run over all 10 steps,
    and the top layer's last hidden state goes through Linear, ReLU, Linear.
    """
    t = tensors(flat, REDDIT_LAYOUT)
    h = t["embedding.weight"][np.asarray(ids)]  # (B, 10, 200)
    for layer in (0, 1):
        h = lstm_layer(
            h,
            t[f"rnn_cells.weight_ih_l{layer}"],
            t[f"rnn_cells.weight_hh_l{layer}"],
            t[f"rnn_cells.bias_ih_l{layer}"],
            t[f"rnn_cells.bias_hh_l{layer}"],
        )
    h = relu(linear(h[:, -1], t["l1.weight"], t["l1.bias"]))  # h_n[1] -> (B, 128)
    return linear(h, t["l2.weight"], t["l2.bias"])


def mf_forward(flat, ids):
    """MovieLens MF on (B, 2) 0-based [user, item] ids -> (B,) predicted ratings."""
    t = tensors(flat, MF_LAYOUT)
    ids = np.asarray(ids)
    u = t["user_factors.weight"][ids[:, 0]]
    v = t["item_factors.weight"][ids[:, 1]]
    return (u * v).sum(axis=1)
