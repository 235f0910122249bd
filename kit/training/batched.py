"""Universe training without an orchestrator: K per-ticker LDTM models trained from one call.

The LDTM forecaster (:class:`kit.models.ldtm.LDTMForecaster`, seed 003) is trained once per ticker. A
universe of K tickers is K independent models of identical shape, so their weights can be stacked
along a leading *model* dimension and the K forward and backward passes run as batched matrix
products (``torch.bmm`` over the model dimension) instead of a Python loop over K small models.

Contents
--------
:class:`BatchedLSTM`
    K independent multi-layer LSTMs, parameters ``(K, 4H, in)``, ``(K, 4H, H)``, ``(K, 4H)``,
    the same gate order (i, f, g, o) and biases (``b_ih + b_hh``) as :class:`torch.nn.LSTM`, so the
    numbers equal K separate ``nn.LSTM`` s up to floating-point reassociation.
:class:`BatchedLDTM`
    K LDTM forecasters as one module, ``(K, B, L, F) -> (K, B, H)``; :meth:`BatchedLDTM.from_models`
    and :meth:`BatchedLDTM.to_models` convert from and to K :class:`~kit.models.ldtm.LDTMForecaster` s.
:func:`train_universe`
    Trains K models, each exactly as ``Trainer(TrainConfig(seed=seed_k)).fit`` would train it alone
    (same initial weights, minibatch order, dropout masks, AdamW, clipping, cosine schedule and early
    stopping), by the ``"batched"`` stacked computation or a ``"loop"`` over K ordinary models.

The LSTM recurrence (Hochreiter & Schmidhuber, 1997, with the forget gate of Gers et al., 2000) is
the one documented for :class:`torch.nn.LSTM`::

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      f = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)         o = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g                              h' = o * tanh(c')

For each layer the input projection ``W_i x + b`` of all L time steps is one batched matrix product;
only the recurrent product ``W_h h`` runs once per step. The default backward pass
(``bptt="manual"``) is hand-written back-propagation through time: it stores the gate activations,
runs one batched product per step for the recurrent gradient, and computes the weight gradients of
all time steps as two large batched products at the end (as cuDNN and oneDNN do), instead of
autograd's one small product per step and weight. ``bptt="autograd"`` runs the same forward with
ordinary autograd (the reference for tests, and the form that ``torch.compile`` traces).

CPU engineering of the manual path (each measured on the reference 2-core machine): ``tanh`` is
computed as ``2 sigmoid(2 z) - 1`` (torch's CPU ``tanh`` is ~6x slower than its ``sigmoid``; the
values agree to float rounding), the per-step element-wise work runs on cache-sized slices of the K
models, and the large per-step buffers are recycled through a small pool (:func:`clear_workspace`)
because fresh large allocations page-fault on first touch. The pool is process-global and not
thread-safe: train from one thread at a time.

Numerics: the stacked and the per-model computations add the same products in a different order,
so forward passes agree with ``nn.LSTM`` to about 1e-7 in float32 and 1e-16 in float64; training
repeats that difference every step (measured agreement: ``tests/test_batched.py``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..models import LDTMConfig, LDTMForecaster, multi_horizon_mse, window_minmax
from .trainer import EarlyStopping, TrainConfig, Trainer, TrainResult, resolve_device, set_seed

__all__ = [
    "BatchedLSTM",
    "BatchedLDTM",
    "LDTMDropoutMasks",
    "draw_ldtm_dropout_masks",
    "UniverseFit",
    "train_universe",
    "choose_path",
    "ldtm_forward_flops",
    "clear_workspace",
    "HEAD_HIDDEN",
    "PATHS",
]

HEAD_HIDDEN = 64
"""Width of each LDTM horizon head's hidden layer (``Linear(hidden, 64) -> ReLU -> Dropout ->
Linear(64, 1)`` in :class:`kit.models.ldtm.LDTMForecaster`)."""

PATHS = ("auto", "batched", "loop")
_BPTT = ("manual", "autograd")


# ------------------------------------------------------------------------------------------------
# one LSTM layer for K models, time-major (K, L, B, .)
# ------------------------------------------------------------------------------------------------

_POOL: list[torch.Tensor] = []
_POOL_MAX_BYTES = 4 * 2**30


def _take(shape, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised buffer from the workspace pool (or a new one). Large CPU allocations are
    fresh ``mmap`` s whose first touch page-faults (about 10x the cost of refilling a buffer on the
    reference machine), so the big per-step buffers of :class:`_LayerBPTT` are recycled."""
    shape = tuple(shape)
    for n, t in enumerate(_POOL):
        if t.shape == shape and t.dtype == like.dtype and t.device == like.device:
            return _POOL.pop(n)
    return like.new_empty(shape)


def _give(*tensors: torch.Tensor) -> None:
    """Return buffers to the pool (oldest dropped beyond ``_POOL_MAX_BYTES``)."""
    _POOL.extend(tensors)
    while sum(t.numel() * t.element_size() for t in _POOL) > _POOL_MAX_BYTES:
        _POOL.pop(0)


_EW_CHUNK_ELEMS = 1 << 18


def _ew_chunk(K: int, B: int, H: int, device: torch.device) -> int:
    """Models per slice for the per-step element-wise work: about ``_EW_CHUNK_ELEMS`` floats (1 MiB)
    per ``(slice, B, H)`` tensor, so that the chain of ~10 operations of a step stays in cache
    instead of streaming ``(K, B, H)`` tensors through memory (measured 5-10% per training step at
    K = 100, B = H = 128 on the reference machine). On CUDA one slice (kernel launches cost more)."""
    if device.type == "cuda":
        return K
    return max(1, min(K, _EW_CHUNK_ELEMS // max(B * H, 1)))


def clear_workspace() -> None:
    """Free the batched LSTM's pooled buffers."""
    _POOL.clear()


def _layer_autograd(x, w_ih, w_hh, b_ih, b_hh, h, c):
    """One LSTM layer of K models with ordinary autograd. ``x`` ``(K, L, B, I)`` contiguous;
    returns ``(out (K, L, B, H), h_n (K, B, H), c_n (K, B, H))``."""
    K, L, B, n_in = x.shape
    xw = torch.baddbmm((b_ih + b_hh).unsqueeze(1), x.reshape(K, L * B, n_in), w_ih.transpose(1, 2))
    w_hh_t = w_hh.transpose(1, 2)
    outs = []
    for xw_t in xw.view(K, L, B, -1).unbind(1):  # unbind: its backward stacks once (no L x L copies)
        i, f, g, o = torch.baddbmm(xw_t, h, w_hh_t).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=1), h, c


class _LayerBPTT(torch.autograd.Function):
    """One LSTM layer of K models with hand-written back-propagation through time.

    Forward saves the activated gates ``(K, L, B, 4H)``, the cell states and their tanh, and the
    hidden states ``(K, L, B, H)``; backward overwrites the saved gates with the gates' gradients
    (so it may run only once: a second backward raises RuntimeError).
    """

    @staticmethod
    def forward(ctx, x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        K, L, B, n_in = x.shape
        H = w_hh.shape[-1]
        # tanh(z) = 2 sigmoid(2 z) - 1 (torch's CPU sigmoid is several times faster than its tanh):
        # the g rows of the weights and bias are doubled (exact in floating point), so that one
        # sigmoid over all four gates serves, and g = 2 s - 1 afterwards.
        scale = x.new_ones(4 * H, 1)
        scale[2 * H : 3 * H] = 2.0
        acts = _take((K, L * B, 4 * H), x)
        torch.baddbmm(
            ((b_ih + b_hh) * scale[:, 0]).unsqueeze(1),
            x.reshape(K, L * B, n_in),
            (w_ih * scale).transpose(1, 2),
            out=acts,
        )
        acts = acts.view(K, L, B, 4 * H)
        cs, tcs = _take((K, L, B, H), x), _take((K, L, B, H), x)
        hs = x.new_empty(K, L, B, H)
        w_hh_t = (w_hh * scale).transpose(1, 2).contiguous()  # (K, H, 4H): the faster operand layout
        h, c = h0, c0
        pre = _take((K, B, 4 * H), x)  # a contiguous product output is faster than in place on acts[:, t]
        kc = _ew_chunk(K, B, H, x.device)
        for t in range(L):
            a = acts[:, t]
            torch.baddbmm(a, h, w_hh_t, out=pre)  # all K models in one product
            for k0 in range(0, K, kc):  # element-wise work on cache-sized slices of the models
                s = slice(k0, k0 + kc)
                a_s = a[s]
                torch.sigmoid(pre[s], out=a_s)
                i, f, g, o = a_s.chunk(4, dim=-1)
                g.mul_(2.0).sub_(1.0)  # tanh of the gate's pre-activation
                c_t = torch.mul(f, c[s], out=cs[s, t])
                c_t.addcmul_(i, g)
                tc = torch.mul(c_t, 2.0, out=tcs[s, t]).sigmoid_().mul_(2.0).sub_(1.0)  # tanh(c_t)
                torch.mul(o, tc, out=hs[s, t])
            h, c = hs[:, t], cs[:, t]
        h, c = h.clone(), c.clone()
        _give(pre)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, w_ih, w_hh, h0, c0, acts, cs, tcs, hs)
        else:  # nothing to differentiate (e.g. evaluation): recycle the buffers now
            _give(acts.view(K, L * B, 4 * H), cs, tcs)
        ctx.set_materialize_grads(False)  # unused outputs (e.g. all steps of the top layer) give None
        ctx.used = False
        return hs, h, c

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn):
        if ctx.used:
            raise RuntimeError(
                "the batched LSTM's manual backward can run only once per forward (retain_graph is not supported)"
            )
        ctx.used = True
        x, w_ih, w_hh, h0, c0, acts, cs, tcs, hs = ctx.saved_tensors
        K, L, B, n_in = x.shape
        H = w_hh.shape[-1]
        # Per step, on cache-sized (K, B, H) tensors, overwriting the step's saved gates (i, f, g, o)
        # with the pre-activation gradients. With dc = dL/dc_t (including the path through h_t):
        #   dc_t = dc_{t+1} f_{t+1} + dh_t o (1 - tanh(c_t)^2)
        #   d_i = dc g i (1 - i),  d_f = dc c_{t-1} f (1 - f),  d_g = dc i (1 - g^2),  d_o = dh tanh(c_t) o (1 - o)
        dh = g_hn.clone() if g_hn is not None else h0.new_zeros(K, B, H)
        dc = g_cn.clone() if g_cn is not None else h0.new_zeros(K, B, H)
        kc = _ew_chunk(K, B, H, x.device)
        for t in range(L - 1, -1, -1):
            a = acts[:, t]
            for k0 in range(0, K, kc):  # element-wise work on cache-sized slices of the models
                s = slice(k0, k0 + kc)
                i, f, g, o = a[s].chunk(4, dim=-1)
                tc = tcs[s, t]
                c_prev = cs[s, t - 1] if t > 0 else c0[s]
                dh_s, dc_s = dh[s], dc[s]
                if g_out is not None:
                    dh_s = dh_s + g_out[s, t]
                dh_tc = dh_s * tc
                dc_s.addcmul_(dh_s.addcmul(dh_tc, tc, value=-1), o)  # + dh o (1 - tc^2)
                v = dh_tc * o
                torch.addcmul(v, v, o, value=-1, out=o)  # d_o = v (1 - o)
                w = dc_s * i
                x_ = w * g
                torch.addcmul(w, x_, g, value=-1, out=g)  # d_g = dc i (1 - g^2)
                torch.addcmul(x_, x_, i, value=-1, out=i)  # d_i = dc g i (1 - i)
                dc_s.mul_(f)  # dL/dc_{t-1}
                z = dc_s * c_prev
                torch.addcmul(z, z, f, value=-1, out=f)  # d_f = dc c_{t-1} f (1 - f)
            dh = torch.bmm(a, w_hh)  # all K models in one product
        # weight gradients of all L steps as single products: dW = sum_t d_gates_t^T [x_t | h_{t-1}]
        # (computed as (input^T d_gates)^T, the faster orientation for a thin input)
        d_gates = acts.view(K, L * B, 4 * H)
        need = ctx.needs_input_grad
        dx = torch.bmm(d_gates, w_ih).view(K, L, B, n_in) if need[0] else None
        dw_ih = (
            torch.bmm(x.reshape(K, L * B, n_in).transpose(1, 2), d_gates).transpose(1, 2) if need[1] else None
        )
        dw_hh = None
        if need[2]:
            h_prev = _take((K, L, B, H), x)
            h_prev[:, 0] = h0
            h_prev[:, 1:] = hs[:, :-1]
            dw_hh = torch.bmm(h_prev.view(K, L * B, H).transpose(1, 2), d_gates).transpose(1, 2)
            _give(h_prev)
        db = d_gates.sum(dim=1) if (need[3] or need[4]) else None
        _give(d_gates, cs, tcs)
        return dx, dw_ih, dw_hh, db if need[3] else None, db if need[4] else None, dh, dc


# ------------------------------------------------------------------------------------------------
# BatchedLSTM
# ------------------------------------------------------------------------------------------------


def _lstm_param_names(num_layers: int) -> list[str]:
    return [f"{w}_l{k}" for k in range(num_layers) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def _seeded(seed: int | None, build):
    """``build()`` with torch's global generator seeded by ``seed`` and restored afterwards; with
    ``seed=None``, ``build()`` draws from (and advances) the global generator."""
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()


def _lstm_forward(
    params: dict,
    prefix: str,
    x: torch.Tensor,
    num_layers: int,
    hx=None,
    dropout_masks=None,
    bptt: str = "manual",
):
    """K stacked LSTMs on time-major ``x`` ``(K, L, B, I)``; ``params[prefix + 'weight_ih_l0']``
    etc. Returns ``(out (K, L, B, H), h_n (K, layers, B, H), c_n (K, layers, B, H))``."""
    K, L, B, _ = x.shape
    H = params[f"{prefix}weight_hh_l0"].shape[-1]
    if hx is None:
        zeros = x.new_zeros(K, B, H)
        h0s = c0s = [zeros] * num_layers
    else:
        h0s, c0s = hx[0].unbind(1), hx[1].unbind(1)
    layer_in = x.contiguous()
    h_n, c_n = [], []
    out = layer_in
    for k in range(num_layers):
        w = [params[f"{prefix}{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        if bptt == "manual":
            out, h, c = _LayerBPTT.apply(layer_in, *w, h0s[k], c0s[k])
        else:
            out, h, c = _layer_autograd(layer_in, *w, h0s[k], c0s[k])
        h_n.append(h)
        c_n.append(c)
        if k < num_layers - 1 and dropout_masks is not None:
            layer_in = out * dropout_masks[k]
        else:
            layer_in = out
    return out, torch.stack(h_n, dim=1), torch.stack(c_n, dim=1)


class BatchedLSTM(nn.Module):
    """K independent multi-layer LSTMs evaluated as one batched computation.

    Parameters ``weight_ih_l{k}`` ``(K, 4H, I_k)``, ``weight_hh_l{k}`` ``(K, 4H, H)``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(K, 4H)`` are the K models' :class:`torch.nn.LSTM`
    parameters of the same names stacked along a leading model dimension (``I_0 = input_size``,
    ``I_k = H`` above), rows in torch's gate order (i, f, g, o).

    Parameters
    ----------
    n_models : K >= 1.
    input_size, hidden_size, num_layers : as :class:`torch.nn.LSTM` (always ``batch_first``).
    dropout : dropout on the outputs of every layer but the last, in training mode, as
        :class:`torch.nn.LSTM`; in [0, 1).
    seeds : K ints, optional. Model k is initialised exactly as ``torch.manual_seed(seeds[k]);
        nn.LSTM(...)`` would be (the global generator is restored afterwards). Without seeds the K
        models are initialised from the global generator in turn, exactly as K ``nn.LSTM``
        constructions in a row.
    bptt : ``"manual"`` (hand-written back-propagation through time, default) or ``"autograd"``.

    Raises
    ------
    ValueError
        A size below 1, dropout outside [0, 1), ``len(seeds) != K`` or an unknown ``bptt``.

    Notes
    -----
    ``forward(x)`` takes ``x`` ``(K, B, L, I)`` (float32 or float64) and returns ``(out, (h_n,
    c_n))``: ``out`` ``(K, B, L, H)`` and ``h_n``, ``c_n`` ``(K, num_layers, B, H)``, i.e. model k's
    slice equals ``nn.LSTM(batch_first=True)`` on ``x[k]`` (its ``h_n`` has shape
    ``(num_layers, B, H)``). In training mode with ``dropout > 0`` the inter-layer dropout uses
    ``dropout_masks`` when given (``num_layers - 1`` tensors ``(K, L, B, H)``, time-major, already
    scaled by ``1 / (1 - dropout)``); otherwise fresh masks are drawn from the global generator
    (statistically the same as K ``nn.LSTM`` s, not the same draws).
    """

    def __init__(
        self,
        n_models: int,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        seeds: Sequence[int] | None = None,
        bptt: str = "manual",
    ):
        super().__init__()
        for name, v in (
            ("n_models", n_models),
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if seeds is not None and len(seeds) != n_models:
            raise ValueError(f"seeds: expected n_models={n_models} seeds, got {len(seeds)}")
        if bptt not in _BPTT:
            raise ValueError(f"bptt must be one of {_BPTT}, got {bptt!r}")
        self.n_models, self.input_size, self.hidden_size = int(n_models), int(input_size), int(hidden_size)
        self.num_layers, self.dropout, self.bptt = int(num_layers), float(dropout), bptt
        G = 4 * self.hidden_size
        for k in range(self.num_layers):
            i = self.input_size if k == 0 else self.hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(self.n_models, G, i)))
            self.register_parameter(
                f"weight_hh_l{k}", nn.Parameter(torch.empty(self.n_models, G, self.hidden_size))
            )
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(self.n_models, G)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(self.n_models, G)))
        seeds = [None] * self.n_models if seeds is None else list(seeds)
        lstms = [_seeded(s, self._make_lstm) for s in seeds]
        self.load_lstm_state_dicts([m.state_dict() for m in lstms])

    def _make_lstm(self) -> nn.LSTM:
        return nn.LSTM(
            self.input_size,
            self.hidden_size,
            num_layers=self.num_layers,
            batch_first=True,
            dropout=self.dropout if self.num_layers > 1 else 0.0,
        )

    @classmethod
    def from_lstms(cls, lstms: Sequence[nn.LSTM], bptt: str = "manual") -> BatchedLSTM:
        """Stack K ``nn.LSTM`` s of one shape (unidirectional, with biases, no projections).

        Raises
        ------
        ValueError
            An empty list, or LSTMs whose sizes, layers, dropout or options differ (names the field).
        """
        if len(lstms) == 0:
            raise ValueError("lstms: need at least one nn.LSTM, got 0")
        ref = lstms[0]
        for k, m in enumerate(lstms):
            if not isinstance(m, nn.LSTM):
                raise ValueError(f"lstms[{k}]: expected nn.LSTM, got {type(m).__name__}")
            for f in (
                "input_size",
                "hidden_size",
                "num_layers",
                "dropout",
                "bias",
                "bidirectional",
                "proj_size",
            ):
                if getattr(m, f) != getattr(ref, f):
                    raise ValueError(
                        f"lstms[{k}].{f}={getattr(m, f)!r} differs from lstms[0].{f}={getattr(ref, f)!r}"
                    )
        if ref.bidirectional or not ref.bias or ref.proj_size:
            raise ValueError("lstms: only unidirectional LSTMs with biases and no projections are supported")
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out.n_models, out.input_size, out.hidden_size = len(lstms), ref.input_size, ref.hidden_size
        out.num_layers, out.dropout, out.bptt = ref.num_layers, float(ref.dropout), bptt
        if bptt not in _BPTT:
            raise ValueError(f"bptt must be one of {_BPTT}, got {bptt!r}")
        sd = [m.state_dict() for m in lstms]
        for name in _lstm_param_names(out.num_layers):
            out.register_parameter(name, nn.Parameter(torch.stack([d[name].detach() for d in sd]).clone()))
        return out

    @torch.no_grad()
    def load_lstm_state_dicts(self, state_dicts: Sequence[dict]) -> None:
        """Copy K ``nn.LSTM`` state dicts (keys ``weight_ih_l0`` ...) into the stacked parameters.

        Raises
        ------
        ValueError
            Not K dicts, a missing key, or a tensor of the wrong shape (names the key).
        """
        if len(state_dicts) != self.n_models:
            raise ValueError(f"state_dicts: expected {self.n_models} state dicts, got {len(state_dicts)}")
        for name in _lstm_param_names(self.num_layers):
            p = getattr(self, name)
            for k, d in enumerate(state_dicts):
                if name not in d:
                    raise ValueError(f"state_dicts[{k}]: missing key {name!r}")
                if tuple(d[name].shape) != tuple(p.shape[1:]):
                    raise ValueError(
                        f"state_dicts[{k}][{name!r}]: shape {tuple(d[name].shape)} != expected {tuple(p.shape[1:])}"
                    )
            p.copy_(torch.stack([d[name].to(p.dtype) for d in state_dicts]))

    def lstm_state_dicts(self) -> list[dict]:
        """K ``nn.LSTM``-compatible state dicts (detached copies)."""
        return [
            {n: getattr(self, n)[k].detach().clone() for n in _lstm_param_names(self.num_layers)}
            for k in range(self.n_models)
        ]

    def to_lstms(self) -> list[nn.LSTM]:
        """K ordinary ``nn.LSTM(batch_first=True)`` s with this module's weights, dtype and device."""
        p = self.weight_ih_l0
        out = []
        for d in self.lstm_state_dicts():
            m = self._make_lstm().to(device=p.device, dtype=p.dtype)
            m.load_state_dict(d)
            out.append(m.train(self.training))
        return out

    def forward(self, x: torch.Tensor, hx=None, dropout_masks=None):
        K = self.weight_ih_l0.shape[0]
        if x.dim() != 4 or x.shape[0] != K or x.shape[-1] != self.input_size:
            raise ValueError(
                f"x must have shape (K={K}, batch, lookback, {self.input_size}), got {tuple(x.shape)}"
            )
        masks = None
        if self.training and self.dropout > 0 and self.num_layers > 1:
            if dropout_masks is None:
                B, L = x.shape[1], x.shape[2]
                q = 1.0 - self.dropout
                masks = [
                    x.new_empty(K, L, B, self.hidden_size).bernoulli_(q).div_(q)
                    for _ in range(self.num_layers - 1)
                ]
            else:
                masks = list(dropout_masks)
        params = dict(self.named_parameters())
        out, h_n, c_n = _lstm_forward(params, "", x.transpose(1, 2), self.num_layers, hx, masks, self.bptt)
        return out.transpose(1, 2), (h_n, c_n)


# ------------------------------------------------------------------------------------------------
# BatchedLDTM
# ------------------------------------------------------------------------------------------------


class LDTMDropoutMasks(NamedTuple):
    """Dropout factors (0 or ``1 / (1 - p)``) for one training step of K LDTM models.

    ``lstm``: ``num_layers - 1`` tensors ``(K, L, B, hidden)``, time-major (the layout in which
    torch's CPU ``nn.LSTM`` draws its inter-layer masks); ``heads``: ``(K, B, n_horizons * 64)``,
    horizon j in columns ``64 j .. 64 j + 63``.
    """

    lstm: list
    heads: torch.Tensor


def _check_ldtm_config(config: LDTMConfig) -> None:
    for name in ("n_features", "hidden_size", "num_layers"):
        v = getattr(config, name)
        if int(v) != v or v < 1:
            raise ValueError(f"config.{name} must be an integer >= 1, got {v!r}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"config.dropout must be in [0, 1), got {config.dropout!r}")
    if len(tuple(config.horizons)) < 1:
        raise ValueError("config.horizons must name at least one horizon")


def _ldtm_forward(
    params: dict,
    x: torch.Tensor,
    num_layers: int,
    masks: LDTMDropoutMasks | None = None,
    bptt: str = "manual",
) -> torch.Tensor:
    """K LDTM forecasters on ``x`` ``(K, B, L, F)`` with parameters ``params`` (the names of
    :class:`BatchedLDTM`); returns ``(K, B, H)``."""
    K, B, L, F = x.shape
    z = window_minmax(x.reshape(K * B, L, F)).view(K, B, L, F).transpose(1, 2)
    _, h_n, _ = _lstm_forward(
        params, "lstm.", z, num_layers, None, masks.lstm if masks is not None else None, bptt
    )
    last = h_n[:, -1]  # (K, B, hidden): the top layer's last step, out[:, -1]
    w1, b1, w2, b2 = params["head_w1"], params["head_b1"], params["head_w2"], params["head_b2"]
    nh, hh = w1.shape[1], w1.shape[2]
    a = torch.relu(torch.baddbmm(b1.reshape(K, 1, nh * hh), last, w1.reshape(K, nh * hh, -1).transpose(1, 2)))
    if masks is not None:
        a = a * masks.heads
    return (a.view(K, B, nh, hh) * w2.unsqueeze(1)).sum(-1) + b2.unsqueeze(1)


class BatchedLDTM(nn.Module):
    """K LDTM forecasters (:class:`kit.models.ldtm.LDTMForecaster`) as one module.

    Each model: per-window min-max scaling (:func:`kit.models.window_minmax`), a ``num_layers``
    LSTM (:class:`BatchedLSTM`), and per horizon a head ``Linear(hidden, 64) -> ReLU -> Dropout ->
    Linear(64, 1)`` on the last hidden state. Head parameters: ``head_w1`` ``(K, H, 64, hidden)``,
    ``head_b1`` ``(K, H, 64)``, ``head_w2`` ``(K, H, 64)``, ``head_b2`` ``(K, H)`` for H horizons.

    Shapes: input ``(K, B, L, F)`` float32 -> output ``(K, B, H)``; model k's slice equals
    ``LDTMForecaster.forward`` on ``x[k]``.

    Parameters
    ----------
    config : :class:`kit.models.LDTMConfig`, shared by the K models.
    n_models : K >= 1.
    seeds : K ints, optional. Model k starts from the weights of ``torch.manual_seed(seeds[k]);
        LDTMForecaster(config)`` (the global generator is restored afterwards); without seeds, from
        K ``LDTMForecaster(config)`` constructions in a row on the global generator.
    bptt : ``"manual"`` or ``"autograd"`` (see :class:`BatchedLSTM`).

    Raises
    ------
    ValueError
        Bad config field (named), ``n_models < 1`` or ``len(seeds) != n_models``.

    Notes
    -----
    ``forward(x, dropout_masks=None)``: in training mode with ``config.dropout > 0`` the masks of
    :class:`LDTMDropoutMasks` are used when given (see :func:`draw_ldtm_dropout_masks` for the
    masks a K-model loop would draw), else fresh masks from the global generator.
    """

    def __init__(
        self, config: LDTMConfig, n_models: int, seeds: Sequence[int] | None = None, bptt: str = "manual"
    ):
        if int(n_models) != n_models or n_models < 1:
            raise ValueError(f"n_models must be an integer >= 1, got {n_models!r}")
        if seeds is not None and len(seeds) != n_models:
            raise ValueError(f"seeds: expected n_models={n_models} seeds, got {len(seeds)}")
        _check_ldtm_config(config)
        seeds = [None] * int(n_models) if seeds is None else list(seeds)
        models = [_seeded(s, lambda: LDTMForecaster(config)) for s in seeds]
        super().__init__()
        self._load(models, bptt)

    def _load(self, models: Sequence[LDTMForecaster], bptt: str) -> None:
        ref = models[0]
        self.config = ref.config
        self.n_models = len(models)
        self.lstm = BatchedLSTM.from_lstms([m.lstm for m in models], bptt=bptt)
        w1 = torch.stack([torch.stack([h[0].weight.detach() for h in m.heads]) for m in models])
        b1 = torch.stack([torch.stack([h[0].bias.detach() for h in m.heads]) for m in models])
        w2 = torch.stack([torch.stack([h[3].weight.detach()[0] for h in m.heads]) for m in models])
        b2 = torch.stack([torch.stack([h[3].bias.detach()[0] for h in m.heads]) for m in models])
        self.head_w1, self.head_b1 = nn.Parameter(w1.clone()), nn.Parameter(b1.clone())
        self.head_w2, self.head_b2 = nn.Parameter(w2.clone()), nn.Parameter(b2.clone())
        self.train(ref.training)

    @property
    def bptt(self) -> str:
        return self.lstm.bptt

    @classmethod
    def from_models(cls, models: Sequence[LDTMForecaster], bptt: str = "manual") -> BatchedLDTM:
        """Stack K :class:`~kit.models.ldtm.LDTMForecaster` s of one config (weights copied).

        Raises
        ------
        ValueError
            An empty list, a non-LDTM model, or configs that differ (names the field).
        """
        if len(models) == 0:
            raise ValueError("models: need at least one LDTMForecaster, got 0")
        ref = models[0]
        for k, m in enumerate(models):
            if not isinstance(m, LDTMForecaster):
                raise ValueError(f"models[{k}]: expected LDTMForecaster, got {type(m).__name__}")
            for f, v in asdict(m.config).items():
                if v != getattr(ref.config, f):
                    raise ValueError(
                        f"models[{k}].config.{f}={v!r} differs from models[0].config.{f}={getattr(ref.config, f)!r}"
                    )
            if (
                len(m.heads) != len(ref.config.horizons)
                or m.heads[0][0].out_features != ref.heads[0][0].out_features
            ):
                raise ValueError(f"models[{k}].heads: unexpected head layout")
        _check_ldtm_config(ref.config)
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out._load(models, bptt)
        return out

    def to_models(self) -> list[LDTMForecaster]:
        """K :class:`~kit.models.ldtm.LDTMForecaster` s with this module's weights, dtype, device and
        training mode (``from_models(m.to_models())`` round-trips exactly)."""
        p = self.head_w1
        out = []
        for k, lstm_sd in enumerate(self.lstm.lstm_state_dicts()):
            with torch.random.fork_rng(devices=[]):  # the weights are overwritten: keep the generator
                m = LDTMForecaster(self.config)
            m.to(device=p.device, dtype=p.dtype)
            sd = {f"lstm.{n}": v for n, v in lstm_sd.items()}
            for j in range(len(self.config.horizons)):
                sd[f"heads.{j}.0.weight"] = self.head_w1[k, j].detach().clone()
                sd[f"heads.{j}.0.bias"] = self.head_b1[k, j].detach().clone()
                sd[f"heads.{j}.3.weight"] = self.head_w2[k, j].detach().clone().unsqueeze(0)
                sd[f"heads.{j}.3.bias"] = self.head_b2[k, j].detach().clone().reshape(1)
            m.load_state_dict(sd)
            out.append(m.train(self.training))
        return out

    def forward(self, x: torch.Tensor, dropout_masks: LDTMDropoutMasks | None = None) -> torch.Tensor:
        K = self.head_w1.shape[0]
        if x.dim() != 4 or x.shape[0] != K or x.shape[-1] != self.config.n_features:
            raise ValueError(
                f"x must have shape (K={K}, batch, lookback, {self.config.n_features}), got {tuple(x.shape)}"
            )
        masks = None
        if self.training and self.config.dropout > 0:
            masks = dropout_masks
            if masks is None:
                B, L = x.shape[1], x.shape[2]
                masks = _draw_masks_global(K, B, L, self.config, x)
        return _ldtm_forward(dict(self.named_parameters()), x, self.config.num_layers, masks, self.bptt)


def _draw_masks_global(K: int, B: int, L: int, config: LDTMConfig, like: torch.Tensor) -> LDTMDropoutMasks:
    q = 1.0 - config.dropout
    lstm = [
        like.new_empty(K, L, B, config.hidden_size).bernoulli_(q).div_(q)
        for _ in range(config.num_layers - 1)
    ]
    heads = like.new_empty(K, B, len(config.horizons) * HEAD_HIDDEN).bernoulli_(q).div_(q)
    return LDTMDropoutMasks(lstm, heads)


def draw_ldtm_dropout_masks(
    generators: Sequence[torch.Generator],
    batch_sizes: Sequence[int],
    lookback: int,
    config: LDTMConfig,
    pad_to: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LDTMDropoutMasks | None:
    """The dropout masks K :class:`~kit.models.ldtm.LDTMForecaster` s draw in one training-mode forward.

    Model k's masks come from ``generators[k]`` (CPU generators) in the order in which
    ``LDTMForecaster.forward`` consumes torch's global generator on the CPU: ``nn.LSTM``'s
    inter-layer masks (``torch.empty(L, B, hidden).bernoulli_(1 - p)``, time-major, one per layer
    but the last), then one ``(B, 64)`` mask per horizon head. With ``generators[k]`` in the state of
    the global generator, the masks are the ones that forward would use (checked in
    ``tests/test_batched.py``; this follows torch's CPU dropout implementation).

    Parameters
    ----------
    generators : K ``torch.Generator`` s (advanced in place).
    batch_sizes : K batch sizes ``B_k``; masks are padded with ones to ``pad_to`` (default
        ``max B_k``) rows.
    lookback : L.
    config : the models' :class:`~kit.models.LDTMConfig`.

    Returns
    -------
    :class:`LDTMDropoutMasks` on ``device`` in ``dtype`` (values 0 or ``1 / (1 - p)``), or None when
    ``config.dropout == 0`` (torch draws nothing then).
    """
    p = float(config.dropout)
    if p == 0.0:
        return None
    q = 1.0 - p
    B = max(batch_sizes) if pad_to is None else int(pad_to)
    K, H, nl, nh = len(generators), config.hidden_size, config.num_layers, len(config.horizons)
    lstm = [torch.ones(K, lookback, B, H, dtype=dtype) for _ in range(nl - 1)]
    heads = torch.ones(K, B, nh * HEAD_HIDDEN, dtype=dtype)
    for k, (g, b) in enumerate(zip(generators, batch_sizes, strict=True)):
        for layer in range(nl - 1):
            lstm[layer][k, :, :b] = (
                torch.empty(lookback, b, H, dtype=dtype).bernoulli_(q, generator=g).div_(q)
            )
        for j in range(nh):
            heads[k, :b, j * HEAD_HIDDEN : (j + 1) * HEAD_HIDDEN] = (
                torch.empty(b, HEAD_HIDDEN, dtype=dtype).bernoulli_(q, generator=g).div_(q)
            )
    dev = torch.device(device)
    return LDTMDropoutMasks([m.to(dev) for m in lstm], heads.to(dev))


# ------------------------------------------------------------------------------------------------
# loss
# ------------------------------------------------------------------------------------------------


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """:func:`kit.models.multi_horizon_mse` with ``allow_empty=True`` (a model's batch may lack a
    horizon's target): the loss of every path here."""
    return multi_horizon_mse(pred, target, mask, allow_empty=True)


# ------------------------------------------------------------------------------------------------
# AdamW and clipping on stacked parameters (torch.optim.AdamW's single-tensor arithmetic)
# ------------------------------------------------------------------------------------------------


def _clip_per_model(grads: list[torch.Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` applied to each model (leading dim) separately."""
    K = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), 2, dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, 2, dim=1)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(K, *([1] * (g.dim() - 1))))


def _adamw_(
    p, g, m, v, step: int, lr: float, wd: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
) -> None:
    """One AdamW step in place, in the order of torch's ``_single_tensor_adam`` (decoupled decay)."""
    if wd != 0:
        p.mul_(1 - lr * wd)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    step_size = lr / bc1
    denom = (v.sqrt() / bc2**0.5).add_(eps)
    p.addcdiv_(m, denom, value=-step_size)


# ------------------------------------------------------------------------------------------------
# train_universe
# ------------------------------------------------------------------------------------------------


@dataclass
class UniverseFit:
    """Result of :func:`train_universe`.

    Attributes
    ----------
    models : K trained :class:`~kit.models.ldtm.LDTMForecaster` s (best validation weights, eval mode,
        on the trainer's device).
    results : K :class:`kit.training.TrainResult` (``best_val_loss``, ``best_epoch``,
        ``epochs_run``, ``history`` of ``{"epoch", "train_loss", "val_loss"}``).
    path : the path that ran (``"batched"`` or ``"loop"``).
    seconds : wall time of the call.
    seeds : the K seeds used (initial weights, minibatch order and dropout of model k).
    """

    models: list
    results: list
    path: str
    seconds: float = 0.0
    seeds: list = field(default_factory=list)


AUTO_CPU_PATH = "batched"
"""CPU choice of ``path="auto"``: the path ``benchmarks/bench_universe_training.py`` measured faster
on the reference 2-core machine at every K tried (figures: ``docs/decisions/0005-batched-universe-training-path.md``)."""


def choose_path(device: torch.device | str) -> str:
    """The path ``path="auto"`` takes: ``"batched"`` on CUDA; on the CPU the faster of the two in
    ``benchmarks/bench_universe_training.py`` on the reference 2-core machine (K = 100 tickers,
    default :class:`~kit.models.LDTMConfig`): see :data:`AUTO_CPU_PATH`."""
    return "batched" if torch.device(device).type == "cuda" else AUTO_CPU_PATH


def _as_f32(a, where: str) -> np.ndarray:
    arr = np.asarray(a)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{where}: expected a real numeric array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_datasets(datasets, config: LDTMConfig) -> list[tuple]:
    """Validate and convert ``datasets``; returns K tuples ``(X, y, mask, Xv, yv, mask_v)`` (NaN
    targets set to 0 with mask False)."""
    if datasets is None or isinstance(datasets, (str, bytes)) or len(datasets) == 0:
        raise ValueError("datasets: need at least one (X_train, y_train, X_val, y_val) tuple, got K=0")
    F, H = config.n_features, len(tuple(config.horizons))
    lookback = None
    out = []
    for k, d in enumerate(datasets):
        if not isinstance(d, (tuple, list)) or len(d) != 4:
            raise ValueError(
                f"datasets[{k}]: expected a tuple (X_train, y_train, X_val, y_val), got {type(d).__name__} of length {len(d) if hasattr(d, '__len__') else '?'}"
            )
        arrays = []
        for part, (xn, yn) in (("train", ("X_train", "y_train")), ("val", ("X_val", "y_val"))):
            X = _as_f32(d[0 if part == "train" else 2], f"datasets[{k}].{xn}")
            y = _as_f32(d[1 if part == "train" else 3], f"datasets[{k}].{yn}")
            if X.ndim != 3 or X.shape[-1] != F or X.shape[0] < 1 or X.shape[1] < 1:
                raise ValueError(f"datasets[{k}].{xn}: expected shape (S >= 1, L, F={F}), got {X.shape}")
            if lookback is None:
                lookback = X.shape[1]
            if X.shape[1] != lookback:
                raise ValueError(
                    f"datasets[{k}].{xn}: lookback L={X.shape[1]} differs from datasets[0].X_train's L={lookback} (one L for all models)"
                )
            if y.shape != (X.shape[0], H):
                raise ValueError(
                    f"datasets[{k}].{yn}: expected shape (S={X.shape[0]}, H={H}) to match {xn}, got {y.shape}"
                )
            if not np.isfinite(X).all():
                raise ValueError(f"datasets[{k}].{xn}: contains non-finite values (only targets may be NaN)")
            m = np.isfinite(y)
            if m.sum() < 2:
                raise ValueError(f"datasets[{k}].{yn}: fewer than 2 finite targets")
            arrays += [X, np.where(m, y, 0.0).astype(np.float32), m]
        out.append(tuple(arrays))
    return out


def _check_train(train: TrainConfig) -> None:
    if int(train.epochs) != train.epochs or train.epochs < 1:
        raise ValueError(f"train.epochs must be an integer >= 1, got {train.epochs!r}")
    if int(train.batch_size) != train.batch_size or train.batch_size < 1:
        raise ValueError(f"train.batch_size must be an integer >= 1, got {train.batch_size!r}")
    if not train.max_grad_norm > 0:
        raise ValueError(f"train.max_grad_norm must be > 0, got {train.max_grad_norm!r}")
    if not train.lr > 0:
        raise ValueError(f"train.lr must be > 0, got {train.lr!r}")


class _RestoreRNG:
    """Context manager restoring Python's, numpy's and torch's (CPU and CUDA) global generators."""

    def __enter__(self):
        self.py, self.np, self.cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        return self

    def __exit__(self, *exc):
        random.setstate(self.py)
        np.random.set_state(self.np)
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        return False


def train_universe(
    datasets: Sequence[tuple],
    config: LDTMConfig | None = None,
    train: TrainConfig | None = None,
    path: str = "auto",
    *,
    seeds: Sequence[int] | None = None,
    models_per_pass: int | None = None,
    bptt: str | None = None,
    compile: bool = False,
) -> UniverseFit:
    """Train K per-ticker LDTM forecasters from one call.

    Model k is trained as this code would train it alone (the repository's convention of
    :func:`kit.training.walk_forward`; the loop path runs exactly this, the batched path the same
    arithmetic in another order)::

        set_seed(seeds[k]); model = LDTMForecaster(config)
        Trainer(TrainConfig(**{**asdict(train), "seed": seeds[k]}), loss_fn=_masked_mse).fit(
            model, (X_train, y_train, mask), (X_val, y_val, mask_val))

    i.e. the multi-horizon MSE (:func:`_masked_mse`), AdamW (``train.lr``,
    ``train.weight_decay``), gradient-norm clipping at ``train.max_grad_norm`` per model, cosine
    annealing over ``train.epochs``, minibatches of ``train.batch_size`` in the order of
    ``torch.randperm(S_k, generator=torch.Generator().manual_seed(seeds[k]))`` per epoch, dropout
    masks from a generator seeded with ``seeds[k]``, and early stopping on the validation loss with
    ``train.patience`` per model: each model keeps its own best weights and stops on its own.

    Parameters
    ----------
    datasets : K >= 1 tuples ``(X_train (S_k, L, F), y_train (S_k, H), X_val (V_k, L, F),
        y_val (V_k, H))`` of float arrays (converted to float32); L is shared by all models, S_k and
        V_k may differ. NaN targets are masked out of the loss (X must be finite).
    config : :class:`~kit.models.LDTMConfig` of every model (default ``LDTMConfig()``).
    train : :class:`~kit.training.TrainConfig` (default ``TrainConfig()``); ``train.seed`` gives the
        default seeds.
    path : ``"batched"``: the K models as one :class:`BatchedLDTM`, each step one stacked forward
        and backward over the models that have a batch at that step (a model that has stopped is
        removed from the stack, so its parameters no longer change and cost nothing).
        ``"loop"``: a Python loop of :class:`~kit.training.Trainer` fits over K ordinary
        ``LDTMForecaster`` s (torch's fused ``nn.LSTM``). ``"auto"``: :func:`choose_path` (batched on
        CUDA; on the CPU :data:`AUTO_CPU_PATH`, the faster path measured by
        ``benchmarks/bench_universe_training.py`` on a 2-core machine).
    seeds : K ints (default ``train.seed + k``).
    models_per_pass : batched path: at most this many models per stacked forward/backward (default:
        as many as fit an activation budget of about 4 GiB). Results do not depend on it.
    bptt : batched path: ``"manual"`` (hand-written back-propagation through time; the default
        without ``compile``) or ``"autograd"`` (the default, and required, with ``compile=True``).
    compile : batched path: run the forward and loss under ``torch.compile`` (inductor compiles the
        autograd forward and backward; the first call pays the compilation, later calls with the
        same shapes reuse it).

    Returns
    -------
    :class:`UniverseFit` with the K trained models and K :class:`~kit.training.TrainResult`.

    Raises
    ------
    ValueError
        K = 0, a malformed or mismatched array (the message names ``datasets[k].field``), bad
        ``seeds``, ``path``, ``train`` or ``config`` field.

    Notes
    -----
    The two paths run the same arithmetic in a different order (oneDNN's fused LSTM against batched
    matrix products), so trained weights agree to float32 reassociation error, not bit for bit; see
    ``tests/test_batched.py`` for the measured agreement. The loop path on CUDA uses
    ``train.amp``; the batched path always computes in float32. Python's, numpy's and torch's
    global generators are left as they were.
    """
    t0 = time.perf_counter()
    config = LDTMConfig() if config is None else config
    train = TrainConfig() if train is None else train
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    _check_ldtm_config(config)
    _check_train(train)
    data = _check_datasets(datasets, config)
    K = len(data)
    if seeds is None:
        seeds = [int(train.seed) + k for k in range(K)]
    else:
        seeds = [int(s) for s in seeds]
        if len(seeds) != K:
            raise ValueError(f"seeds: expected K={K} seeds (one per dataset), got {len(seeds)}")
    if models_per_pass is not None and (int(models_per_pass) != models_per_pass or models_per_pass < 1):
        raise ValueError(f"models_per_pass must be an integer >= 1, got {models_per_pass!r}")
    if bptt is None:
        bptt = "autograd" if compile else "manual"
    if bptt not in _BPTT or (compile and bptt != "autograd"):
        raise ValueError(f"bptt must be one of {_BPTT} ('autograd' with compile=True), got {bptt!r}")
    device = resolve_device(train.device)
    chosen = choose_path(device) if path == "auto" else path
    with _RestoreRNG():
        if chosen == "loop":
            models, results = _train_loop(data, config, train, seeds)
        else:
            models, results = _train_batched(
                data, config, train, seeds, device, models_per_pass, bptt, compile
            )
    return UniverseFit(models, results, chosen, time.perf_counter() - t0, seeds)


def _train_loop(data, config, train, seeds):
    models, results = [], []
    for (X, y, m, Xv, yv, mv), seed in zip(data, seeds, strict=True):
        set_seed(seed)
        model = LDTMForecaster(config)
        cfg = TrainConfig(**{**asdict(train), "seed": seed})
        res = Trainer(cfg, loss_fn=_masked_mse).fit(model, (X, y, m), (Xv, yv, mv))
        models.append(model)
        results.append(res)
    return models, results


def _lr_schedule(train: TrainConfig) -> list[float]:
    """The learning rate of each epoch exactly as ``torch.optim.lr_scheduler.CosineAnnealingLR``
    (``T_max = epochs``) computes it in :class:`kit.training.Trainer`."""
    dummy = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([dummy], lr=train.lr)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(train.epochs, 1)) if train.cosine else None
    )
    lrs = []
    for _ in range(train.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()
    return lrs


def ldtm_forward_flops(config: LDTMConfig, lookback: int) -> int:
    """Multiply-add FLOPs (2 per multiply-add) of one LDTM forward pass on one window.

    ``sum_layers 2 L 4H (I_l + H)`` (input and recurrent products of every time step) plus
    ``n_horizons * (2 * 64 * H + 2 * 64)`` for the heads; element-wise gate arithmetic and the
    min-max scaling (O(L H)) are not counted. A training step costs about 3x this (backward: the
    gradients with respect to the inputs and to the weights, each about one forward).
    """
    H, L = config.hidden_size, lookback
    lstm = sum(2 * L * 4 * H * ((config.n_features if k == 0 else H) + H) for k in range(config.num_layers))
    heads = len(config.horizons) * (2 * HEAD_HIDDEN * H + 2 * HEAD_HIDDEN)
    return lstm + heads


_ACTIVATION_BUDGET = 4 * 2**30


def _activation_bytes_per_model(config: LDTMConfig, batch: int, lookback: int) -> int:
    # per layer: gates (4H) + c, tanh(c), h (3H) + dropout output (H), float32
    return 4 * batch * lookback * config.hidden_size * 8 * config.num_layers


def _gather(tensors: list[torch.Tensor], ids: list[int], idxs: list[torch.Tensor], rows: int) -> torch.Tensor:
    """``(len(ids), rows, ...)``: row r holds ``tensors[ids[r]][idxs[r]]``, zero (False) padded."""
    first = tensors[ids[0]]
    out = first.new_zeros((len(ids), rows, *first.shape[1:]))
    for r, (k, idx) in enumerate(zip(ids, idxs, strict=True)):
        out[r, : len(idx)] = tensors[k][idx]
    return out


_compiled_loss = None


def _loss_fn(params, x, y, m, masks, num_layers, bptt):
    return _masked_mse(_ldtm_forward(params, x, num_layers, masks, bptt), y, m)


def _train_batched(data, config, train, seeds, device, models_per_pass, bptt, use_compile):
    global _compiled_loss
    K = len(data)
    L = data[0][0].shape[1]
    B = int(train.batch_size)
    if use_compile and _compiled_loss is None:
        _compiled_loss = torch.compile(_loss_fn)
    loss_fn = _compiled_loss if use_compile else _loss_fn
    if models_per_pass is None:
        models_per_pass = max(1, int(_ACTIVATION_BUDGET // _activation_bytes_per_model(config, B, L)))

    # initial weights exactly as `set_seed(seed); LDTMForecaster(config)`
    net = BatchedLDTM(config, K, seeds=seeds, bptt=bptt)
    names = [n for n, _ in net.named_parameters()]
    P = {n: p.detach().clone().to(device) for n, p in net.named_parameters()}
    exp_avg = {n: torch.zeros_like(p) for n, p in P.items()}
    exp_avg_sq = {n: torch.zeros_like(p) for n, p in P.items()}
    steps = np.zeros(K, dtype=np.int64)

    # the K datasets as CPU tensors sharing the arrays' memory (no stacked copy); batches are gathered
    Xtr, ytr, mtr, Xva, yva, mva = ([torch.from_numpy(d[i]) for d in data] for i in range(6))
    n_valid = [m.sum(-1) for m in mtr]  # valid targets per sample
    sizes = [len(d[0]) for d in data]

    perm_gens = [torch.Generator().manual_seed(s) for s in seeds]
    drop_gens = [torch.Generator().manual_seed(s) for s in seeds]
    lrs = _lr_schedule(train)

    alive = list(range(K))  # original model ids whose stacked slices P[:, pos] are alive
    stoppers = [EarlyStopping(train.patience) for _ in range(K)]
    epochs_run = [0] * K
    history: list[list[dict]] = [[] for _ in range(K)]
    best_state = [{n: P[n][k].clone() for n in names} for k in range(K)]

    epochs = range(train.epochs)
    if train.progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="epochs", leave=False)
    for epoch in epochs:
        lr = lrs[epoch]
        orders = {k: torch.randperm(sizes[k], generator=perm_gens[k]) for k in alive}
        batch_losses: dict[int, list] = {k: [] for k in alive}
        n_steps = max(math.ceil(sizes[k] / B) for k in alive)
        for j in range(n_steps):
            part, idxs = [], []  # positions in `alive` taking a step, their sample indices
            for pos, k in enumerate(alive):
                idx = orders[k][j * B : (j + 1) * B]
                if len(idx) == 0 or int(n_valid[k][idx].sum()) < 2:
                    continue  # as Trainer: no forward, no dropout draw, no optimiser step
                part.append(pos)
                idxs.append(idx)
            for c0 in range(0, len(part), models_per_pass):
                cpart, cidx = part[c0 : c0 + models_per_pass], idxs[c0 : c0 + models_per_pass]
                losses = _batched_step(
                    P,
                    exp_avg,
                    exp_avg_sq,
                    steps,
                    names,
                    alive,
                    cpart,
                    cidx,
                    Xtr,
                    ytr,
                    mtr,
                    drop_gens,
                    config,
                    train,
                    lr,
                    L,
                    device,
                    loss_fn,
                    bptt,
                )
                for pos, loss in zip(cpart, losses, strict=True):
                    batch_losses[alive[pos]].append(loss)
        # validation (eval mode: no dropout), one loss per alive model
        val = _evaluate(P, alive, Xva, yva, mva, config, bptt, models_per_pass, device)
        stopped = []
        for pos, k in enumerate(alive):
            vl = val[pos]
            tl = float(np.mean(batch_losses[k])) if batch_losses[k] else float("nan")
            history[k].append({"epoch": epoch, "train_loss": tl, "val_loss": vl})
            epochs_run[k] = epoch + 1
            improved, stop = stoppers[k].update(epoch, vl)
            if improved:
                best_state[k] = {n: P[n][pos].detach().clone() for n in names}
            elif stop:
                stopped.append(pos)
        if stopped:  # drop finished models from the stack: their weights and Adam state freeze
            keep = [pos for pos in range(len(alive)) if pos not in stopped]
            alive = [alive[pos] for pos in keep]
            if not alive:
                break
            kt = torch.tensor(keep, device=device)
            for n in names:  # (the step counts are indexed by model id and need no compaction)
                P[n], exp_avg[n], exp_avg_sq[n] = P[n][kt], exp_avg[n][kt], exp_avg_sq[n][kt]

    # K ordinary models from the best weights
    with torch.no_grad():
        for n, p in net.named_parameters():
            p.copy_(torch.stack([best_state[k][n].cpu() for k in range(K)]))
    models = [m.to(device) for m in net.eval().to_models()]
    results = [TrainResult(stoppers[k].best, stoppers[k].best_epoch, epochs_run[k], history[k]) for k in range(K)]
    return models, results


def _batched_step(
    P,
    exp_avg,
    exp_avg_sq,
    steps,
    names,
    alive,
    part,
    idxs,
    Xtr,
    ytr,
    mtr,
    drop_gens,
    config,
    train,
    lr,
    L,
    device,
    loss_fn,
    bptt,
):
    """Forward, backward, per-model clipping and AdamW for the models at positions ``part`` of the
    stack; returns their losses (floats)."""
    n_alive = len(alive)
    ids = [alive[pos] for pos in part]
    sizes = [len(i) for i in idxs]
    bmax = max(sizes)
    full = len(part) == n_alive
    pos_t = torch.tensor(part, device=device)
    x = _gather(Xtr, ids, idxs, bmax).to(device)
    y = _gather(ytr, ids, idxs, bmax).to(device)
    m = _gather(mtr, ids, idxs, bmax).to(device)  # padding rows: False
    masks = draw_ldtm_dropout_masks([drop_gens[k] for k in ids], sizes, L, config, pad_to=bmax, device=device)
    leaves = {n: (P[n] if full else P[n][pos_t]).detach().requires_grad_(True) for n in names}
    losses = loss_fn(leaves, x, y, m, masks, config.num_layers, bptt)
    grads = list(torch.autograd.grad(losses.sum(), [leaves[n] for n in names]))
    _clip_per_model(grads, float(train.max_grad_norm))
    # AdamW per group of models with the same step count (torch's scalar arithmetic per group)
    for k in ids:
        steps[k] += 1
    step_of = np.array([steps[k] for k in ids])
    for s in np.unique(step_of):
        rows = np.flatnonzero(step_of == s)
        if full and len(rows) == n_alive:
            for n, g in zip(names, grads, strict=True):
                _adamw_(P[n], g, exp_avg[n], exp_avg_sq[n], int(s), lr, train.weight_decay)
            continue
        rows_t = torch.as_tensor(rows, device=device)
        where = pos_t[rows_t]
        for n, g in zip(names, grads, strict=True):
            p, ma, va = P[n][where], exp_avg[n][where], exp_avg_sq[n][where]
            _adamw_(p, g[rows_t], ma, va, int(s), lr, train.weight_decay)
            P[n][where], exp_avg[n][where], exp_avg_sq[n][where] = p, ma, va
    return losses.detach().cpu().tolist()


@torch.no_grad()
def _evaluate(P, alive, Xva, yva, mva, config, bptt, models_per_pass, device) -> list[float]:
    """Validation loss (eval mode, no dropout) of each alive model, in passes of at most
    ``models_per_pass`` models and of as many windows as fit the activation budget."""
    L = Xva[alive[0]].shape[1]
    out = []
    for c0 in range(0, len(alive), models_per_pass):
        pos = list(range(c0, min(c0 + models_per_pass, len(alive))))
        ids = [alive[p] for p in pos]
        Pc = P if len(pos) == len(alive) else {n: v[torch.tensor(pos, device=device)] for n, v in P.items()}
        V = max(len(Xva[k]) for k in ids)
        rows = max(1, int(_ACTIVATION_BUDGET // (len(ids) * _activation_bytes_per_model(config, 1, L))))
        preds = []
        for s0 in range(0, V, rows):
            n = min(rows, V - s0)
            idxs = [torch.arange(s0, min(s0 + n, len(Xva[k]))) for k in ids]
            preds.append(
                _ldtm_forward(Pc, _gather(Xva, ids, idxs, n).to(device), config.num_layers, None, bptt)
            )
        full = [torch.arange(len(Xva[k])) for k in ids]
        y, m = _gather(yva, ids, full, V).to(device), _gather(mva, ids, full, V).to(device)
        out += [float(v) for v in _masked_mse(torch.cat(preds, dim=1).float(), y, m).cpu()]
    return out
