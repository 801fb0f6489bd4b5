"""The int8 simulation of `benchmarks/int8_error_budget.py` (used by `int8_qat.py` to train through)
rounds exactly as ONNX Runtime does: its figures stand for the real int8 file only if it does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper


@pytest.fixture(scope="module")
def budget(benchmark_script):
    return benchmark_script("int8_error_budget")


@pytest.mark.parametrize("seed", range(5))
def test_per_batch_activations_round_as_dynamic_quantize_linear(budget, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((4, 37, 24)) * rng.uniform(0.1, 10)).astype(np.float32)
    x[0, 0] *= 8  # an outlier row, as [CLS] is
    if seed % 2:
        x = np.abs(x)  # all positive: the grid's low end is clamped to 0
    graph = helper.make_graph(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "scale", "zero"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"]),
        ],
        "dql",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": x})
    simulated = budget.fake_activations(torch.from_numpy(x), "tensor").numpy()
    np.testing.assert_allclose(simulated, expected, rtol=0, atol=1e-6 * float(np.abs(x).max()))


def test_reduce_range_weights_are_the_weights_quantize_dynamic_writes(budget, tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((48, 32)) * rng.uniform(0.01, 1, size=32)).astype(np.float32)  # [in, out]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 48])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "fp32.onnx")
    quantize_dynamic(
        str(tmp_path / "fp32.onnx"),
        str(tmp_path / "int8.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,  # as crossrank's quantize_onnx_int8
    )
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(tmp_path / "int8.onnx").graph.initializer}
    quantized = next(v for v in stored.values() if v.dtype == np.int8 and v.shape == weight.shape)
    scale = next(v for v in stored.values() if v.dtype == np.float32 and v.shape == (32,))
    assert quantized.min() >= -64 and quantized.max() <= 64
    written = quantized.astype(np.float32) * scale[None, :]
    # nn.Linear holds the transpose: [out, in], one scale per output channel (row).
    simulated = budget.fake_weights(torch.from_numpy(weight.T.copy()), 8, reduce_range=True).numpy().T
    np.testing.assert_allclose(simulated, written, rtol=1e-6, atol=0)


def test_the_rounding_passes_gradients_straight_through(budget) -> None:
    x = torch.linspace(-3, 5, 50, requires_grad=True)
    budget.fake_activations(x[None, None, :], "tensor").sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    w = torch.randn(6, 9, requires_grad=True)
    budget.fake_weights(w, 8, reduce_range=True).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
