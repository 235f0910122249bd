"""Model export: TorchScript and ONNX (opset 17, dynamic batch), with an onnxruntime check.

ONNX export uses torch's TorchScript-based exporter (``dynamo=False``) at opset 17; why:
``docs/decisions/0006-onnx-torchscript-exporter.md``. ``export_onnx(..., dynamo=True)`` uses torch's
default exporter at opset 18 or newer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..base.atomic import atomic_path

__all__ = ["example_input", "export_torchscript", "export_onnx", "onnx_max_abs_diff", "ExportError", "LatestPosition"]


class ExportError(RuntimeError):
    """An exported model disagrees with torch beyond the tolerance, or cannot be exported."""


class LatestPosition(torch.nn.Module):
    """Live-inference wrapper: the position at the last step of each window only.

    ``(B, L, F)`` float32 -> ``(B,)`` float32 in [-1, 1]. Models whose ``forward`` takes
    ``last_only`` (the DMN LSTM) run their head on the last step only; others are sliced. Export
    this wrapper (TorchScript or ONNX) for the daily prediction of a whole universe in one batch.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config
        import inspect

        self._last_only = "last_only" in inspect.signature(model.forward).parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._last_only:
            return self.model(x, last_only=True)
        return self.model(x)[:, -1]


def example_input(model: torch.nn.Module, batch: int = 2, lookback: int | None = None) -> torch.Tensor:
    """A random ``(batch, lookback, n_features)`` float32 input for ``model`` (lookback 30 for the
    LDTM forecaster, 63 otherwise, unless given)."""
    from .ldtm import LDTMForecaster

    if lookback is None:
        inner = model.model if isinstance(model, LatestPosition) else model
        lookback = 30 if isinstance(inner, LDTMForecaster) else 63
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, lookback, model.config.n_features, generator=g)


def export_torchscript(model: torch.nn.Module, path, example: torch.Tensor | None = None) -> Path:
    """Trace ``model`` (eval mode) with ``example`` and save it atomically as TorchScript.

    The traced module accepts any batch size. Returns the path.
    """
    model = model.eval()
    example = example if example is not None else example_input(model)
    with torch.no_grad():
        traced = torch.jit.trace(model, (example,), check_trace=False)
    path = Path(path)
    with atomic_path(path) as tmp:
        traced.save(str(tmp))
    return path


def export_onnx(model: torch.nn.Module, path, example: torch.Tensor | None = None, opset: int = 17, dynamo: bool = False) -> Path:
    """Export ``model`` (eval mode) to ONNX with a dynamic batch axis; input ``x`` ``(batch, L, F)``,
    output ``y`` (positions ``(batch, L)`` or forecasts ``(batch, H)``).

    Raises
    ------
    ExportError
        The exporter failed (its message is kept).
    """
    model = model.eval()
    example = example if example is not None else example_input(model)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            if dynamo:
                batch = torch.export.Dim("batch", min=1, max=1_000_000)
                torch.onnx.export(model, (example,), str(tmp), opset_version=opset, input_names=["x"], output_names=["y"], dynamic_shapes={"x": {0: batch}}, dynamo=True)
            else:
                torch.onnx.export(
                    model, (example,), str(tmp), opset_version=opset, input_names=["x"], output_names=["y"],
                    dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False,
                )
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {exc}") from exc
    return path


def onnx_max_abs_diff(model: torch.nn.Module, path, x: torch.Tensor, tolerance: float | None = 1e-5) -> float:
    """Largest absolute difference between onnxruntime (CPU) and torch on input ``x``.

    Raises
    ------
    ExportError
        The difference exceeds ``tolerance`` (pass ``None`` to only measure).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy().astype(np.float32)})[0]
    with torch.no_grad():
        want = model.eval()(x).numpy()
    diff = float(np.max(np.abs(got - want)))
    if tolerance is not None and diff > tolerance:
        raise ExportError(f"{path}: onnxruntime differs from torch by {diff:.3g} > {tolerance}")
    return diff
