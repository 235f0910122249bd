"""The Momentum Transformer (Wood, Giegerich, Roberts & Zohren, 2021): a decoder-only Temporal Fusion
Transformer (Lim, Arik, Loeff & Pfister, 2021) with variable selection, an LSTM encoder, interpretable
causal multi-head attention, gated residual networks and a tanh position head."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["TransformerConfig", "MomentumTransformer", "GatedLinearUnit", "GatedResidualNetwork", "VariableSelectionNetwork", "InterpretableMultiHeadAttention"]



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

