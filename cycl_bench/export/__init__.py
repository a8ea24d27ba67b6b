"""Trained models out of the suite: saved per (strategy entry, seed) cell, exported to QONNX or
ONNX, checked against PyTorch.

- `saved`: `save_model` / `load_model`, one file per cell under `<run folder>/models/`, and
  `pack_saved_model`, its bit-packed form for distribution.
- `deployed`: the deployed network rebuilt from fixed parts an exporter understands.
- `formats`: `qonnx` and `onnx` export, and a predictor that runs each exported graph.
- `check`: exported predictions against PyTorch's on the stream's test set.
- `size`: the deployed size (1-bit weights bit-packed) against FP32.

Only `saved` is imported here: the runner saves models without loading the ONNX libraries.
"""

from cycl_bench.export.saved import (
    MODELS_DIR,
    SavedModelInfo,
    file_sha256,
    load_model,
    model_path,
    pack_saved_model,
    save_model,
)

__all__ = [
    "MODELS_DIR",
    "SavedModelInfo",
    "file_sha256",
    "load_model",
    "model_path",
    "pack_saved_model",
    "save_model",
]
