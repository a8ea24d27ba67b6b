"""The continual stage: one (strategy, seed) run over a stream, its costs and its resources."""
