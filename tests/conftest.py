"""Shared test set-up: caches and data roots in temporary folders, never the user's."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("CYCL_BENCH_CACHE", str(tmp_path_factory.mktemp("checkpoints")))
    patch.setenv("CYCL_BENCH_DATA", str(tmp_path_factory.mktemp("data")))
    patch.setenv("WANDB_SILENT", "true")
    yield
    patch.undo()


def pytest_collection_modifyitems(config, items):
    """Tests marked gpu are skipped where torch sees no CUDA device (select them with -m gpu)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is false)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
