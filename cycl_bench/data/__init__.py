"""Continual-learning streams: CORe50 NI/NC and Split-CIFAR, from real, synthetic or folder data.

Importing this package registers every benchmark in `cycl_bench.registry.BENCHMARKS`.
"""

from cycl_bench.data import cifar, core50  # noqa: F401  (registers the benchmarks)
from cycl_bench.data.base import Stream, parse_source, protocol_hash
from cycl_bench.data.protocol import protocol_of

__all__ = ["Stream", "parse_source", "protocol_hash", "protocol_of"]
