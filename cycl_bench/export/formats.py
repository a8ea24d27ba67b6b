"""Export formats: `qonnx` (Brevitas' QONNX export) and `onnx` (what onnxruntime runs), each with
a predictor that runs the exported graph on a batch of images.

- `qonnx`: `brevitas.export.export_qonnx` of the deployed model (`deployed.QonnxBinaryConv2d`):
  the binary convolutions as `BipolarQuant` weights and inputs, the 8-bit stem, projections and
  classifier as `Quant` nodes at their bits. Batch size 1 in the file, as FINN expects; run with
  `qonnx.core.onnx_exec.execute_onnx` after `ChangeBatchSize`.
- `onnx`: `brevitas.export.export_onnx_qcdq` (QuantizeLinear / Clip / DequantizeLinear, int8
  weights) for the 8-bit layers; the binary convolutions as int8 +-1 weights, `Less` + `Where`
  on their inputs and `Mul` by the per-channel scale (`deployed.OnnxBinaryConv2d`), since QCDQ
  has no 1-bit form. Dynamic batch size; runs in onnxruntime.

Both take normalized images (N, C, H, W) named `image` and return `logits` (N, classes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from brevitas.export import export_onnx_qcdq, export_qonnx
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.change_batchsize import ChangeBatchSize
from qonnx.util.cleanup import cleanup_model
from torch import nn

from cycl_bench.export.deployed import (
    OnnxBinaryConv2d,
    QonnxBinaryConv2d,
    with_deployed_binary_layers,
)

OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear need opset 13
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
Predictor = Callable[[np.ndarray], np.ndarray]


# what both exports pass to Brevitas' TorchScript-based exporters
EXPORT_OPTIONS = {
    "dynamo": False,
    "opset_version": OPSET,
    "input_names": [INPUT_NAME],
    "output_names": [OUTPUT_NAME],
    "keep_initializers_as_inputs": False,
}


def write_qonnx(model: nn.Module, path: Path, input_shape: tuple[int, int, int]) -> None:
    deployed = with_deployed_binary_layers(model, QonnxBinaryConv2d)
    export_qonnx(deployed, torch.zeros(1, *input_shape), export_path=str(path), **EXPORT_OPTIONS)


def write_onnx(model: nn.Module, path: Path, input_shape: tuple[int, int, int]) -> None:
    deployed = with_deployed_binary_layers(model, OnnxBinaryConv2d)
    export_onnx_qcdq(
        deployed,
        torch.zeros(1, *input_shape),
        export_path=str(path),
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        **EXPORT_OPTIONS,
    )


def onnxruntime_predictor(path: Path, threads: int | None = None) -> Predictor:
    """Runs an ONNX file in onnxruntime on the CPU (`threads` intra-op threads, default all)."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def predict(images: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]

    return predict


def qonnx_predictor(path: Path) -> Predictor:
    """Runs a QONNX file with qonnx's reference executor, one graph per batch size."""
    exported = ModelWrapper(str(path))
    graphs: dict[int, ModelWrapper] = {}

    def predict(images: np.ndarray) -> np.ndarray:
        batch = len(images)
        if batch not in graphs:
            graphs[batch] = cleanup_model(exported.transform(ChangeBatchSize(batch)))
        graph = graphs[batch]
        outputs = execute_onnx(graph, {graph.graph.input[0].name: images})
        return outputs[graph.graph.output[0].name]

    return predict


@dataclass(frozen=True)
class ExportFormat:
    name: str
    description: str
    write: Callable[[nn.Module, Path, tuple[int, int, int]], None]
    predictor: Callable[[Path], Predictor]


FORMATS = {
    "qonnx": ExportFormat(
        "qonnx",
        "QONNX (Brevitas): BipolarQuant binary layers, Quant 8-bit layers; batch 1",
        write_qonnx,
        qonnx_predictor,
    ),
    "onnx": ExportFormat(
        "onnx",
        "ONNX for onnxruntime: QCDQ 8-bit layers, int8 +-1 binary weights, Where-sign inputs",
        write_onnx,
        onnxruntime_predictor,
    ),
}


def export_model(
    model: nn.Module, path: str | Path, input_shape: tuple[int, int, int], format: str
) -> Path:
    """Export `model` at its deployed precision to `path` in `format` and check the file with
    `onnx.checker`; written to a temporary file first, so `path` is complete or untouched."""
    path = Path(path)
    staging = path.with_name(path.name + ".tmp")
    try:
        FORMATS[format].write(model, staging, input_shape)
        onnx.checker.check_model(str(staging))
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path
