"""Split CIFAR: the torchvision dataset object is an in-memory one of the real shape; the
class order, Avalanche's split, the transforms and the test views above it are the real code."""

import numpy as np
import pytest
import torch

from cycl_bench.data import cifar, protocol_hash, protocol_of
from cycl_bench.errors import UserError


def fake_torchvision_cifar(num_classes: int, root):
    """Like torchvision's CIFAR: uint8 NHWC `data`, list `targets`, `classes`."""
    rng = np.random.default_rng(num_classes)

    def split(per_class: int, train: bool):
        targets = np.tile(np.arange(num_classes), per_class)
        images = rng.integers(0, 256, (len(targets), 32, 32, 3), dtype=np.uint8)
        names = [f"name{c}" for c in range(num_classes)]
        return cifar.in_memory_cifar(num_classes, images, targets, names, train=train)

    return split(3, True), split(2, False)


@pytest.fixture
def offline_cifar(monkeypatch):
    monkeypatch.setattr(cifar, "load_torchvision_cifar", fake_torchvision_cifar)


def test_the_in_memory_dataset_reads_like_torchvision(offline_cifar):
    train, _ = fake_torchvision_cifar(10, None)
    image, target = train[0]
    assert image.size == (32, 32) and image.mode == "RGB"  # a PIL image, as from the files
    assert isinstance(target, int) and len(train) == 30


def test_split_cifar10_is_five_experiences_of_two_classes_in_the_recorded_order(offline_cifar):
    stream = cifar.split_cifar10()
    order = stream.protocol["class_order"]
    assert stream.n_experiences == 5
    assert stream.classes_per_experience == [sorted(order[i : i + 2]) for i in range(0, 10, 2)]
    assert stream.test_sizes == [4] * 5
    assert stream.source == "real" and stream.image_shape == (3, 32, 32)


def test_split_cifar100_is_ten_by_ten(offline_cifar):
    stream = cifar.split_cifar100(seed=3)
    assert [len(c) for c in stream.classes_per_experience] == [10] * 10
    assert stream.classes_per_experience[0] == sorted(stream.protocol["class_order"][:10])


def test_the_half_first_variant_is_fifty_then_five_times_ten(offline_cifar):
    stream = cifar.split_cifar100_50_5x10()
    assert [len(c) for c in stream.classes_per_experience] == [50, 10, 10, 10, 10, 10]
    assert stream.protocol_hash != protocol_hash(protocol_of("split_cifar100"))


def test_test_views_hold_exactly_each_experience_classes(offline_cifar):
    stream = cifar.split_cifar10(seed=1)
    for classes, view in zip(stream.classes_per_experience, stream.test_views, strict=True):
        assert sorted({int(t) for t in view.targets}) == classes


def test_the_class_order_comes_from_the_stream_seed_and_is_in_the_protocol(offline_cifar):
    assert protocol_of("split_cifar10", seed=0) == protocol_of("split_cifar10", seed=0)
    assert (
        protocol_of("split_cifar10", seed=0)["class_order"]
        != protocol_of("split_cifar10", seed=1)["class_order"]
    )
    assert cifar.split_cifar10(seed=1).protocol == protocol_of("split_cifar10", seed=1)


def test_images_are_normalized_tensors_and_identical_on_every_read(offline_cifar):
    stream = cifar.split_cifar10()
    dataset = stream.train_stream[0].dataset
    image = dataset[0][0]
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
    assert torch.equal(image, dataset[0][0])


def test_a_corrupt_cifar_file_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"truncated")
    with pytest.raises(UserError, match=r"data_batch_1 is corrupt \(checksum mismatch\)"):
        cifar.split_cifar10(data_root=tmp_path)


def test_folder_data_is_refused_with_the_benchmarks_that_read_folders(tmp_path):
    with pytest.raises(UserError, match="core50_nc --data folder:PATH"):
        cifar.split_cifar10(data=f"folder:{tmp_path}")
