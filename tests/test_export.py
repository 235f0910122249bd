import pytest
import torch

from kit.models import (
    BaselineConfig,
    DeepMomentumLSTM,
    DMNConfig,
    LDTMConfig,
    LDTMForecaster,
    MomentumTransformer,
    PerStepBaseline,
    TransformerConfig,
    export,
)

MODELS = [
    lambda: DeepMomentumLSTM(DMNConfig(8, 20)),
    lambda: MomentumTransformer(TransformerConfig(8, 16, 4)),
    lambda: PerStepBaseline(BaselineConfig(8)),
    lambda: PerStepBaseline(BaselineConfig(8, 16)),
    lambda: LDTMForecaster(LDTMConfig(hidden_size=32)),
]


@pytest.mark.parametrize("make", MODELS)
def test_onnx_opset17_dynamic_batch_matches_torch(tmp_path, make):
    import onnx

    torch.manual_seed(0)
    model = make().eval()
    path = export.export_onnx(model, tmp_path / "m.onnx")
    assert onnx.load(str(path)).opset_import[0].version == 17
    for batch in (1, 37):
        x = export.example_input(model, batch)
        assert export.onnx_max_abs_diff(model, path, x) <= 1e-5


@pytest.mark.parametrize("make", MODELS[:2])
def test_torchscript_round_trip_any_batch(tmp_path, make):
    torch.manual_seed(1)
    model = make().eval()
    path = export.export_torchscript(model, tmp_path / "m.pt")
    loaded = torch.jit.load(str(path))
    x = export.example_input(model, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-6)


def test_onnx_mismatch_is_reported(tmp_path):
    torch.manual_seed(2)
    model = DeepMomentumLSTM(DMNConfig(8, 4)).eval()
    path = export.export_onnx(model, tmp_path / "m.onnx")
    with torch.no_grad():
        model.head.bias += 1.0  # the torch model changes after export
    with pytest.raises(export.ExportError, match="differs"):
        export.onnx_max_abs_diff(model, path, export.example_input(model, 3))


@pytest.mark.parametrize("make", MODELS[:3])
def test_latest_position_equals_last_step_of_sequence_and_exports(tmp_path, make):
    torch.manual_seed(3)
    model = make().eval()
    live = export.LatestPosition(model)
    x = export.example_input(live, 9)
    with torch.no_grad():
        torch.testing.assert_close(live(x), model(x)[:, -1], rtol=0, atol=1e-6)
    assert live(x).shape == (9,)
    path = export.export_onnx(live, tmp_path / "live.onnx")
    assert export.onnx_max_abs_diff(live, path, export.example_input(live, 4)) <= 1e-5
    traced = torch.jit.load(str(export.export_torchscript(live, tmp_path / "live.pt")))
    with torch.no_grad():
        torch.testing.assert_close(traced(x), live(x), rtol=1e-5, atol=1e-6)
