"""Torch models. Forward takes ``(batch, lookback, features)`` float32; position models return
positions in [-1, 1] of shape ``(batch, lookback)`` (one per time step)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "DMNConfig",
    "DeepMomentumLSTM",
    "TransformerConfig",
    "MomentumTransformer",
    "GatedResidualNetwork",
    "VariableSelectionNetwork",
    "InterpretableMultiHeadAttention",
    "BaselineConfig",
    "PerStepBaseline",
    "LDTMConfig",
    "LDTMForecaster",
    "window_minmax",
    "ensemble_weights",
    "PositionEnsemble",
    "build_model",
    "MODEL_NAMES",
    "MODEL_LABELS",
]


@dataclass
class DMNConfig:
    """Configuration of :class:`DeepMomentumLSTM` (stored in every checkpoint)."""

    n_features: int
    hidden_size: int = 20
    num_layers: int = 1
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return {"model": "dmn_lstm", **asdict(self)}


class DeepMomentumLSTM(nn.Module):
    """Deep Momentum Network, LSTM variant (Lim, Zohren & Roberts, 2019, section 3.2 and eq. 1).

    An LSTM over the lookback window, dropout, and a linear layer with tanh giving the position
    ``X_t in [-1, 1]`` at every time step. Trained with :func:`kit.losses.sharpe_loss` on captured
    returns ``X_t * target_vol / ex_ante_vol_t * r_{t+1}``.

    Shapes: input ``(B, L, F)`` float32 -> output ``(B, L)`` float32 in [-1, 1].
    """

    def __init__(self, config: DMNConfig):
        super().__init__()
        if config.n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {config.n_features}")
        if config.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {config.hidden_size}")
        if not 0.0 <= config.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
        self.config = config
        self.lstm = nn.LSTM(
            config.n_features,
            config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, 1)

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Positions ``(B, L)``, or ``(B,)`` for the last step only when ``last_only`` (live
        inference: the head runs on one step instead of ``L``). Raises ``ValueError`` on a bad shape."""
        if x.dim() != 3 or x.shape[-1] != self.config.n_features:
            raise ValueError(f"x must have shape (batch, lookback, {self.config.n_features}), got {tuple(x.shape)}")
        h, _ = self.lstm(x)
        if last_only:
            h = h[:, -1]
        return torch.tanh(self.head(self.dropout(h))).squeeze(-1)


def build_model(config: dict) -> nn.Module:
    """Rebuild a model from the ``config`` dict stored in a checkpoint (``config["model"]`` is one
    of :data:`MODEL_NAMES`).

    Raises
    ------
    ValueError
        Unknown ``config['model']``.
    """
    cfg = dict(config)
    name = cfg.pop("model", None)
    if name == "dmn_lstm":
        return DeepMomentumLSTM(DMNConfig(**cfg))
    if name == "momentum_transformer":
        return MomentumTransformer(TransformerConfig(**cfg))
    if name in ("linear", "mlp"):
        return PerStepBaseline(BaselineConfig(**cfg))
    if name == "ldtm":
        cfg["horizons"] = tuple(cfg.get("horizons", (1, 5, 21)))
        return LDTMForecaster(LDTMConfig(**cfg))
    raise ValueError(f"config['model']={name!r} is not a known model; known: {MODEL_NAMES}")


MODEL_NAMES = ("dmn_lstm", "momentum_transformer", "linear", "mlp", "ldtm")
MODEL_LABELS = {
    "dmn_lstm": "DMN (LSTM)",
    "momentum_transformer": "Momentum Transformer",
    "linear": "Linear",
    "mlp": "MLP",
    "ensemble": "Ensemble",
    "ldtm": "LDTM",
}


# ------------------------------------------------------------------------------------------------
# Momentum Transformer (decoder-only Temporal Fusion Transformer)
# ------------------------------------------------------------------------------------------------


class GatedLinearUnit(nn.Module):
    """GLU of the TFT (Lim et al., 2021, eq. 5): ``sigmoid(W4 g + b4) * (W5 g + b5)`` after dropout.
    ``(..., d_in) -> (..., d_out)``."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gate = nn.Linear(d_in, d_out)
        self.value = nn.Linear(d_in, d_out)

    def forward(self, x):
        x = self.dropout(x)
        return torch.sigmoid(self.gate(x)) * self.value(x)


class GatedResidualNetwork(nn.Module):
    """Gated residual network of the TFT (Lim et al., 2021, eq. 2-4):
    ``LayerNorm(skip(a) + GLU(W1 ELU(W2 a + b2) + b1))``; ``skip`` is a linear map when the
    input and output sizes differ. ``(..., d_in) -> (..., d_out)``."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int | None = None, dropout: float = 0.0):
        super().__init__()
        d_out = d_out or d_in
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_hidden)
        self.glu = GatedLinearUnit(d_hidden, d_out, dropout)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, a):
        eta = self.fc2(torch.nn.functional.elu(self.fc1(a)))
        return self.norm(self.skip(a) + self.glu(eta))


class _StackedLinear(nn.Module):
    """F independent linear maps applied at once: ``(..., F, d_in) -> (..., F, d_out)``."""

    def __init__(self, n: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, d_out).uniform_(-bound, bound))

    def forward(self, x):
        return torch.einsum("...fi,fio->...fo", x, self.weight) + self.bias


class _StackedGRN(nn.Module):
    """F independent gated residual networks (same size in and out) applied at once:
    ``(..., F, d) -> (..., F, d)``; the same computation as F :class:`GatedResidualNetwork` s."""

    def __init__(self, n: int, d: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = _StackedLinear(n, d, d)
        self.fc2 = _StackedLinear(n, d, d)
        self.dropout = nn.Dropout(dropout)
        self.gate = _StackedLinear(n, d, d)
        self.value = _StackedLinear(n, d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, a):
        eta = self.dropout(self.fc2(torch.nn.functional.elu(self.fc1(a))))
        return self.norm(a + torch.sigmoid(self.gate(eta)) * self.value(eta))


class VariableSelectionNetwork(nn.Module):
    """Variable selection of the TFT (Lim et al., 2021, eq. 6-8): each of F scalar inputs is embedded
    to ``d_model`` and passed through its own GRN; softmax weights from a GRN over all embeddings
    mix them. The F per-variable networks run as one batched computation.
    ``(B, L, F) -> ((B, L, d_model), weights (B, L, F))``."""

    def __init__(self, n_features: int, d_model: int, dropout: float = 0.0):
        super().__init__()
        self.n_features = n_features
        self.embed_weight = nn.Parameter(torch.empty(n_features, d_model).uniform_(-1.0, 1.0))
        self.embed_bias = nn.Parameter(torch.zeros(n_features, d_model))
        self.var_grns = _StackedGRN(n_features, d_model, dropout)
        self.weight_grn = GatedResidualNetwork(n_features * d_model, d_model, n_features, dropout)

    def forward(self, x):
        emb = x.unsqueeze(-1) * self.embed_weight + self.embed_bias  # (B, L, F, d)
        weights = torch.softmax(self.weight_grn(emb.flatten(-2)), dim=-1)  # (B, L, F)
        processed = self.var_grns(emb)  # (B, L, F, d)
        return (processed * weights.unsqueeze(-1)).sum(-2), weights


class InterpretableMultiHeadAttention(nn.Module):
    """Interpretable multi-head attention of the TFT (Lim et al., 2021, eq. 13-16): head-specific
    query and key projections, one value projection shared by all heads, the heads' outputs
    averaged, then a linear map. Causal: step t attends to steps <= t only.

    ``(B, L, d) -> ((B, L, d), attention (B, heads, L, L))``."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        self.d_head = max(d_model // n_heads, 1)
        self.q = nn.Linear(d_model, self.d_head * n_heads)
        self.k = nn.Linear(d_model, self.d_head * n_heads)
        self.v = nn.Linear(d_model, self.d_head)
        self.out = nn.Linear(self.d_head, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.n_heads, self.d_head).transpose(1, 2)  # (B, h, L, dh)
        k = self.k(x).view(B, L, self.n_heads, self.d_head).transpose(1, 2)
        v = self.v(x).unsqueeze(1)  # (B, 1, L, dh), shared across heads
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        attn = torch.softmax(scores, dim=-1)
        heads = self.dropout(attn) @ v  # (B, h, L, dh)
        return self.out(heads.mean(dim=1)), attn


@dataclass
class TransformerConfig:
    """Configuration of :class:`MomentumTransformer`."""

    n_features: int
    d_model: int = 16
    n_heads: int = 4
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return {"model": "momentum_transformer", **asdict(self)}


class MomentumTransformer(nn.Module):
    """Momentum Transformer (Wood, Giegerich, Roberts & Zohren, 2021, "Trading with the Momentum
    Transformer: An Intelligent and Interpretable Architecture"): the decoder-only Temporal Fusion
    Transformer variant the paper found best.

    Blocks, in order: variable selection network over the F inputs; LSTM encoder; gated skip
    connection (GLU, add and layer norm) back to the selected inputs; interpretable multi-head
    causal self-attention; gated add and norm; position-wise GRN; gated add and norm with the LSTM
    output; linear layer and tanh giving a position in [-1, 1] at every step.

    Shapes: ``(B, L, F)`` float32 -> ``(B, L)``. ``forward(x, return_weights=True)`` also returns
    ``{"attention": (B, heads, L, L), "variable_weights": (B, L, F)}`` for the report's plots.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.n_features < 1 or config.d_model < 1 or config.n_heads < 1:
            raise ValueError(f"n_features, d_model and n_heads must be >= 1, got {config}")
        if not 0.0 <= config.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {config.dropout}")
        self.config = config
        d, p = config.d_model, config.dropout
        self.vsn = VariableSelectionNetwork(config.n_features, d, p)
        self.lstm = nn.LSTM(d, d, batch_first=True)
        self.lstm_gate = GatedLinearUnit(d, d, p)
        self.lstm_norm = nn.LayerNorm(d)
        self.attention = InterpretableMultiHeadAttention(d, config.n_heads, p)
        self.attn_gate = GatedLinearUnit(d, d, p)
        self.attn_norm = nn.LayerNorm(d)
        self.ff = GatedResidualNetwork(d, d, dropout=p)
        self.out_gate = GatedLinearUnit(d, d, p)
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        if x.dim() != 3 or x.shape[-1] != self.config.n_features:
            raise ValueError(f"x must have shape (batch, lookback, {self.config.n_features}), got {tuple(x.shape)}")
        selected, var_w = self.vsn(x)
        h, _ = self.lstm(selected)
        temporal = self.lstm_norm(selected + self.lstm_gate(h))
        a, attn = self.attention(temporal)
        enriched = self.attn_norm(temporal + self.attn_gate(a))
        out = self.out_norm(temporal + self.out_gate(self.ff(enriched)))
        pos = torch.tanh(self.head(out)).squeeze(-1)
        if return_weights:
            return pos, {"attention": attn, "variable_weights": var_w}
        return pos


# ------------------------------------------------------------------------------------------------
# baselines
# ------------------------------------------------------------------------------------------------


@dataclass
class BaselineConfig:
    """Configuration of the linear (``hidden_size = 0``) and MLP baselines."""

    n_features: int
    hidden_size: int = 0
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return {"model": "mlp" if self.hidden_size else "linear", **asdict(self)}


class PerStepBaseline(nn.Module):
    """Position from the current step's features only: ``tanh(w . x_t + b)`` (linear) or
    ``tanh(MLP(x_t))`` with one hidden ReLU layer (mlp). Same interface as the sequence models:
    ``(B, L, F) -> (B, L)``."""

    def __init__(self, config: BaselineConfig):
        super().__init__()
        self.config = config
        if config.hidden_size:
            self.net = nn.Sequential(nn.Linear(config.n_features, config.hidden_size), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(config.hidden_size, 1))
        else:
            self.net = nn.Linear(config.n_features, 1)

    def forward(self, x):
        if x.dim() != 3 or x.shape[-1] != self.config.n_features:
            raise ValueError(f"x must have shape (batch, lookback, {self.config.n_features}), got {tuple(x.shape)}")
        return torch.tanh(self.net(x)).squeeze(-1)


# ------------------------------------------------------------------------------------------------
# LDTM: per-ticker multi-horizon LSTM forecaster (seed 003)
# ------------------------------------------------------------------------------------------------


@dataclass
class LDTMConfig:
    """Configuration of :class:`LDTMForecaster` (defaults from seed 003)."""

    n_features: int = 11
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.2
    horizons: tuple = (1, 5, 21)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["horizons"] = list(self.horizons)
        return {"model": "ldtm", **d}


def window_minmax(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-window, per-feature min-max scaling to [0, 1] over the lookback axis:
    ``(x - min_L x) / (max_L x - min_L x)``, 0.5 where a feature is constant in the window.
    ``(B, L, F) -> (B, L, F)``; uses only the window itself (no look-ahead)."""
    lo = x.min(dim=1, keepdim=True).values
    hi = x.max(dim=1, keepdim=True).values
    span = hi - lo
    return torch.where(span > eps, (x - lo) / span.clamp_min(eps), torch.full_like(x, 0.5))


class LDTMForecaster(nn.Module):
    """Per-ticker multi-horizon LSTM ("LDTM", seed 003): per-window min-max normalisation, a 2-layer
    LSTM (hidden 128) over a 30-day window of the 11 ``ldtm`` features, and one 128-64-1 head per
    horizon (1, 5, 21 days) on the last hidden state. Forecasts are forward simple returns.

    Shapes: ``(B, L, 11)`` -> ``(B, H)`` float32.
    """

    def __init__(self, config: LDTMConfig):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.lstm = nn.LSTM(config.n_features, h, num_layers=config.num_layers, batch_first=True, dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.heads = nn.ModuleList(
            [nn.Sequential(nn.Linear(h, 64), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(64, 1)) for _ in config.horizons]
        )

    def forward(self, x):
        if x.dim() != 3 or x.shape[-1] != self.config.n_features:
            raise ValueError(f"x must have shape (batch, lookback, {self.config.n_features}), got {tuple(x.shape)}")
        h, _ = self.lstm(window_minmax(x))
        last = h[:, -1]
        return torch.cat([head(last) for head in self.heads], dim=-1)


# ------------------------------------------------------------------------------------------------
# ensembles
# ------------------------------------------------------------------------------------------------


def ensemble_weights(val_losses=None, method: str = "equal", val_positions=None, val_target=None, steps: int = 300, lr: float = 0.05) -> np.ndarray:
    """Weights for combining K members' positions, from validation-period information only.

    ``equal``: 1/K. ``inverse_loss``: proportional to 1 / validation loss, where losses are positive
    (e.g. MSE) or, for Sharpe losses (negative is good), to ``max(-loss, 0)`` with equal weights if
    none is positive. ``stacked``: non-negative weights summing to 1 (a softmax) fitted by
    maximising the Sharpe ratio of the combined validation positions ``(K, ...)`` against
    ``val_target`` (the same scaled returns as the Sharpe loss). Never fit on test periods.

    Returns
    -------
    (K,) float64 weights summing to 1.

    Raises
    ------
    ValueError
        Unknown method or missing inputs for it.
    """
    from .losses import sharpe_loss

    if method == "equal":
        k = len(val_losses) if val_losses is not None else len(val_positions)
        return np.full(k, 1.0 / k)
    if method == "inverse_loss":
        if val_losses is None:
            raise ValueError("method='inverse_loss' needs val_losses")
        losses = np.asarray(val_losses, dtype=float)
        score = 1.0 / losses if (losses > 0).all() else np.maximum(-losses, 0.0)
        if score.sum() <= 0:
            return np.full(len(losses), 1.0 / len(losses))
        return score / score.sum()
    if method == "stacked":
        if val_positions is None or val_target is None:
            raise ValueError("method='stacked' needs val_positions (K, ...) and val_target")
        P = torch.as_tensor(np.nan_to_num(np.asarray(val_positions, dtype=np.float64)))
        y = torch.tensor(np.array(val_target, dtype=np.float64))
        mask = torch.isfinite(y) & torch.isfinite(torch.as_tensor(np.asarray(val_positions, dtype=np.float64))).all(0)
        y = torch.nan_to_num(y)
        logits = torch.zeros(P.shape[0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([logits], lr=lr)
        for _ in range(steps):
            w = torch.softmax(logits, 0)
            combined = (w.view(-1, *([1] * (P.dim() - 1))) * P).sum(0)
            loss = sharpe_loss(combined, y, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.softmax(logits, 0).detach().numpy()
    raise ValueError(f"method must be 'equal', 'inverse_loss' or 'stacked', got {method!r}")


class PositionEnsemble(nn.Module):
    """Weighted average of K position models' outputs: ``sum_k w_k X_k`` (stays in [-1, 1]).
    ``(B, L, F) -> (B, L)``; weights from :func:`ensemble_weights`."""

    def __init__(self, members, weights):
        super().__init__()
        self.members = nn.ModuleList(members)
        w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        if w.shape != (len(self.members),) or (w < 0).any() or abs(float(w.sum()) - 1) > 1e-5:
            raise ValueError(f"weights must be {len(self.members)} non-negative numbers summing to 1, got {weights!r}")
        self.register_buffer("weights", w)

    def forward(self, x):
        return sum(w * m(x) for w, m in zip(self.weights, self.members, strict=True))
