"""CORe50 NICv2-79/196/391 on the synthetic source: the structure of the published protocol.

Expectations are the published NICv2 structure (Lomonaco et al. 2020, read from CORe50's NICv2
file lists) and hand counts: 50 objects x 8 training sessions = 400 object sessions; the first
experience is session 1 of the first object of each category (o1, o6, ..., o46: 10 classes);
the other 390 follow in batches of 5 (79), 2 (196) or 1 (391), each object's sessions in their
temporal order; one shared test set (sessions 3, 7, 10). The real loader on the CORe50 replica:
test_data_core50.py.
"""

import pytest
import torch

from cycl_bench.data import protocol_of, synthetic
from cycl_bench.registry import BENCHMARKS

TRAIN_SESSIONS = (1, 2, 4, 5, 6, 8, 9, 11)
FIRST_OBJECTS = [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
SESSIONS_PER_BATCH = {79: 5, 196: 2, 391: 1}
# one image per object session and test session: every image of the stream is unique, so the
# generator's own images tell which object session each one is
ONE_IMAGE = {"images_per_object": 1, "test_images_per_object": 1, "image_size": 8}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

_streams = {}


def stream_of(batches: int, seed: int = 0):
    if (batches, seed) not in _streams:
        name = f"core50_nicv2_{batches}"
        _streams[batches, seed] = BENCHMARKS.build(name, data="synthetic", seed=seed, **ONE_IMAGE)
    return _streams[batches, seed]


def as_bytes(image: torch.Tensor) -> bytes:
    """A stream image (normalized float) back to the generator's uint8 pixels."""
    return ((image * STD + MEAN) * 255).round().to(torch.uint8).numpy().tobytes()


def object_sessions(stream, seed: int = 0) -> list[list[tuple[int, int]]]:
    """(object, session) of every training image of each experience, looked up among the
    generator's images."""
    generated = synthetic.core50_like(seed, **ONE_IMAGE)
    where = {}
    for session, (images, objects) in generated.train.items():
        for image, obj in zip(images, objects, strict=True):
            where[image.numpy().tobytes()] = (obj, session)
    return [
        [where[as_bytes(image)] for image, *_ in experience.dataset]
        for experience in stream.train_stream
    ]


@pytest.mark.parametrize("batches", [79, 196, 391])
def test_the_stream_has_the_published_number_of_experiences_and_one_shared_test_set(batches):
    stream = stream_of(batches)
    assert (stream.n_experiences, stream.scenario, stream.source) == (batches, "nic", "synthetic")
    assert len(stream.test_views) == 1 and stream.test_sizes == [50 * 3]
    sizes = [len(experience.dataset) for experience in stream.train_stream]
    assert sizes == [10] + [SESSIONS_PER_BATCH[batches]] * (batches - 1)


@pytest.mark.parametrize("batches", [79, 196, 391])
def test_the_first_experience_is_session_one_of_ten_objects_one_per_category(batches):
    stream = stream_of(batches)
    assert stream.classes_per_experience[0] == FIRST_OBJECTS
    assert sorted(object_sessions(stream)[0]) == [(obj, 1) for obj in FIRST_OBJECTS]


@pytest.mark.parametrize("batches", [79, 196, 391])
def test_every_training_object_session_is_used_once_in_temporal_order(batches):
    stream = stream_of(batches)
    experiences = object_sessions(stream)
    pairs = [pair for experience in experiences for pair in experience]
    assert len(pairs) == 400
    assert sorted(pairs) == [(obj, s) for obj in range(50) for s in TRAIN_SESSIONS]
    for obj in range(50):
        assert [s for o, s in pairs if o == obj] == list(TRAIN_SESSIONS)
    assert all(len(e) == SESSIONS_PER_BATCH[batches] for e in experiences[1:])
    labels = [int(y) for experience in stream.train_stream for y in experience.dataset.targets]
    assert labels == [obj for obj, _ in pairs]  # labels are the object numbers


def test_391_gives_one_object_session_per_later_experience():
    stream = stream_of(391)
    assert all(len(classes) == 1 for classes in stream.classes_per_experience[1:])
    assert all(len(experience) == 1 for experience in object_sessions(stream)[1:])


def test_the_test_set_is_the_three_test_sessions_of_every_object():
    stream = stream_of(391)
    generated = synthetic.core50_like(0, **ONE_IMAGE)
    test_images, test_objects = generated.test
    view = stream.test_views[0]
    assert [int(t) for t in view.targets] == test_objects
    assert [as_bytes(image) for image, *_ in view] == [i.numpy().tobytes() for i in test_images]


def test_the_stream_seed_orders_the_sessions_and_keeps_the_first_experience():
    first, other = stream_of(196), stream_of(196, seed=1)
    assert first.classes_per_experience[0] == other.classes_per_experience[0] == FIRST_OBJECTS
    order = [[obj for obj, _ in e] for e in object_sessions(first)[1:]]
    other_order = [[obj for obj, _ in e] for e in object_sessions(other, seed=1)[1:]]
    assert order != other_order
    assert first.protocol_hash != other.protocol_hash


def test_the_three_protocols_are_told_apart_and_match_the_real_ones_in_shape():
    protocols = [protocol_of(f"core50_nicv2_{n}", data="synthetic") for n in (79, 196, 391)]
    assert [p["scenario"] for p in protocols] == ["nicv2_79", "nicv2_196", "nicv2_391"]
    real = protocol_of("core50_nicv2_391")
    assert real.keys() == protocols[2].keys() and real["source"] == "real"
