"""cycl_bench: continual learning with binary and low-precision networks, benchmarked."""

__version__ = "0.1.0"
