"""The offline source: same protocol shape as real data, deterministic, learnable, not trivial."""

import pytest
import torch

from cycl_bench.data import protocol_of, synthetic
from cycl_bench.data.cifar import split_cifar10, split_cifar100
from cycl_bench.data.core50 import core50_nc, core50_ni
from cycl_bench.errors import UserError

SMALL = {"images_per_object": 2, "test_images_per_object": 1}


def all_images(dataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


@pytest.mark.parametrize("name", ["core50_ni", "core50_nc", "split_cifar10", "split_cifar100"])
def test_the_protocol_has_the_shape_of_the_real_one(name):
    real, fake = protocol_of(name), protocol_of(name, data="synthetic")
    assert real.keys() == fake.keys()
    assert fake["source"] == "synthetic" and real["source"] == "real"
    assert real["generator"] is None and fake["generator"]["seed"] == 0


def test_nc_class_sets_are_disjoint_and_cover_all_objects():
    stream = core50_nc(data="synthetic", **SMALL)
    sets = [set(c) for c in stream.classes_per_experience]
    assert [len(s) for s in sets] == [10] + [5] * 8
    assert set().union(*sets) == set(range(50))
    assert sum(len(s) for s in sets) == 50
    assert stream.source == "synthetic" and stream.summary()["data_source"] == "synthetic"


def test_nc_test_views_split_the_shared_test_set_by_class():
    stream = core50_nc(data="synthetic", **SMALL)
    assert len(stream.benchmark.test_stream) == 1
    assert stream.test_sizes == [10 * 3] + [5 * 3] * 8  # 1 image x 3 test sessions per object
    for classes, view in zip(stream.classes_per_experience, stream.test_views, strict=True):
        assert sorted({int(t) for t in view.targets}) == classes


def test_each_ni_experience_is_one_whole_session():
    stream = core50_ni(data="synthetic", **SMALL)
    generated = synthetic.core50_like(0, image_size=32, **SMALL)
    assert stream.n_experiences == 8 and len(stream.test_views) == 1
    for experience, session in zip(
        stream.train_stream, synthetic.CORE50_TRAIN_SESSIONS, strict=True
    ):
        images, objects = generated.train[session]
        assert [int(t) for t in experience.dataset.targets] == objects
        raw = images.float() / 255
        seen = all_images(experience.dataset)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        assert torch.allclose(seen * std + mean, raw, atol=1e-5)


def test_no_test_image_equals_a_train_image():
    generated = synthetic.core50_like(0, image_size=32, **SMALL)
    train = torch.cat([images for images, _ in generated.train.values()]).flatten(1)
    test = generated.test[0].flatten(1)
    identical = (test[:, None, :] == train[None, :, :]).all(dim=2)
    assert not identical.any()


def test_the_same_seed_gives_identical_tensors_and_another_seed_different_ones():
    first = all_images(core50_ni(data="synthetic", seed=4, **SMALL).test_views[0])
    again = all_images(core50_ni(data="synthetic", seed=4, **SMALL).test_views[0])
    other = all_images(core50_ni(data="synthetic", seed=5, **SMALL).test_views[0])
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_the_session_can_be_told_from_the_image_alone():
    """Each session has its own background, lighting, position and scale: a domain shift.
    A nearest-centroid rule on 2x2-pooled colours names the session of held-out images."""
    generated = synthetic.core50_like(0, image_size=32, **SMALL)
    features, sessions = [], []
    for index, session in enumerate(synthetic.CORE50_TRAIN_SESSIONS):
        images = generated.train[session][0].float() / 255
        features.append(torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1))
        sessions += [index] * len(images)
    features, sessions = torch.cat(features), torch.tensor(sessions)
    fit = torch.arange(len(sessions)) % 2 == 0
    centroids = torch.stack([features[fit & (sessions == i)].mean(0) for i in range(8)])
    predicted = torch.cdist(features[~fit], centroids).argmin(1)
    assert (predicted == sessions[~fit]).float().mean() > 0.5  # chance is 1/8


def test_image_size_and_category_level_are_options():
    stream = core50_ni(data="synthetic", image_size=16, object_level=False, **SMALL)
    assert stream.image_shape == (3, 16, 16)
    assert stream.train_stream[0].dataset[0][0].shape == (3, 16, 16)
    assert stream.num_classes == 10 and stream.protocol["level"] == "category"


def test_cifar_shaped_streams_have_cifar_shapes():
    ten = split_cifar10(data="synthetic", train_images_per_class=3, test_images_per_class=2)
    assert ten.num_classes == 10 and ten.image_shape == (3, 32, 32)
    assert ten.train_stream[0].dataset[0][0].shape == (3, 32, 32)
    assert ten.test_sizes == [4] * 5
    hundred = split_cifar100(data="synthetic", train_images_per_class=1, test_images_per_class=1)
    assert hundred.num_classes == 100 and hundred.n_experiences == 10


def test_a_real_only_option_is_refused_with_the_synthetic_ones_listed():
    with pytest.raises(UserError, match="valid options: augment, image_size, images_per_object"):
        core50_ni(data="synthetic", mini=True)


def first_experience_accuracy(seed: int) -> tuple[float, float]:
    """Train a small CNN on NI's first experience (session 1); accuracy on the test sessions."""
    torch.manual_seed(seed)
    stream = core50_ni(data="synthetic", seed=seed)
    train = stream.train_stream[0].dataset
    x, y = all_images(train), torch.tensor([int(t) for t in train.targets])
    test = stream.test_views[0]
    test_x, test_y = all_images(test), torch.tensor([int(t) for t in test.targets])
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 50),
    )  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(30):
        net.train()
        for batch in torch.randperm(len(y)).split(32):
            loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        train_accuracy = (net(x).argmax(1) == y).float().mean().item()
        test_accuracy = (net(test_x).argmax(1) == test_y).float().mean().item()
    return train_accuracy, test_accuracy


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_small_cnn_learns_the_first_experience_but_not_perfectly(seed):
    train_accuracy, test_accuracy = first_experience_accuracy(seed)
    assert train_accuracy > 0.8
    assert 0.1 < test_accuracy < 0.8  # chance is 0.02
