"""Backbones, registered by name in `cycl_bench.registry.BACKBONES`.

Importing this package registers every backbone (the registry imports it on first read).
"""

from cycl_bench.models import reactnet, resnet, tiny, vgg  # noqa: F401  (register backbones)
from cycl_bench.quant.precision import model_size_bytes

__all__ = ["model_size_bytes"]
