"""Metrics over the accuracy matrix and the results-file schema."""
