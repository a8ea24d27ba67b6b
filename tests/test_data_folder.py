"""A user's own image folders as NI (session folders) and NC (class folders) streams."""

import numpy as np
import pytest
import torch
from PIL import Image

from cycl_bench.data import protocol_of
from cycl_bench.data.core50 import core50_nc, core50_ni
from cycl_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cycl_bench.errors import UserError


def write_image(path, value: int, size: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size, size + 2, 3), value, np.uint8)
    Image.fromarray(pixels).save(path)


def session_tree(root, sessions=("day1", "day2", "day10"), classes=("cat", "dog", "owl")):
    for s, session in enumerate((*sessions, "test")):
        for c, name in enumerate(classes):
            for i in range(2):
                suffix = "jpg" if i else "png"
                write_image(root / session / name / f"{i}.{suffix}", 10 * s + 70 * c + i)
    return root


def class_tree(root, classes=("a", "b", "c", "d"), per_class=5):
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"img{i}.png", 50 * c + i)
    return root


def test_session_folders_make_one_ni_experience_each_in_natural_order(tmp_path):
    stream = core50_ni(data=f"folder:{session_tree(tmp_path)}", image_size=8)
    assert stream.source == "folder" and stream.scenario == "ni"
    assert stream.n_experiences == 3
    assert stream.protocol["sessions"] == ["day1", "day2", "day10"]
    assert stream.class_names == ["cat", "dog", "owl"]
    assert [len(exp.dataset) for exp in stream.train_stream] == [6, 6, 6]
    assert stream.test_sizes == [6]
    assert stream.train_stream[0].dataset[0][0].shape == (3, 8, 8)


def test_class_folders_make_an_nc_stream_split_as_asked(tmp_path):
    root = class_tree(tmp_path)
    stream = core50_nc(data=f"folder:{root}", split="2,1,1", test_fraction=0.4)
    assert [len(c) for c in stream.classes_per_experience] == [2, 1, 1]
    assert stream.test_sizes == [4, 2, 2]  # 2 of 5 images per class held out
    assert sum(len(exp.dataset) for exp in stream.train_stream) == 12
    order = [stream.protocol["classes"][i] for i in stream.protocol["class_order"]]
    assert stream.class_names == order


def test_the_folder_protocol_needs_no_image_decoding_and_tracks_the_files(tmp_path):
    root = class_tree(tmp_path)
    stream = core50_nc(data=f"folder:{root}")
    assert stream.protocol == protocol_of("core50_nc", data=f"folder:{root}")
    write_image(root / "a" / "extra.png", 1)
    assert stream.protocol != protocol_of("core50_nc", data=f"folder:{root}")


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match="no images found in"):
        core50_nc(data=f"folder:{tmp_path}")
    with pytest.raises(UserError, match="no images found in"):
        core50_ni(data=f"folder:{tmp_path}")


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        core50_ni(data=f"folder:{tmp_path / 'nope'}")


def test_an_unreadable_image_is_named(tmp_path):
    root = class_tree(tmp_path)
    (root / "b" / "img3.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"cannot read image .*b/img3.png"):
        core50_nc(data=f"folder:{root}")


def test_a_class_missing_from_the_test_session_is_named(tmp_path):
    root = session_tree(tmp_path)
    for path in (root / "test" / "dog").iterdir():
        path.unlink()
    with pytest.raises(UserError, match="class 'dog' has no test images"):
        core50_ni(data=f"folder:{root}")


def test_a_session_tree_without_test_folder_is_refused(tmp_path):
    root = session_tree(tmp_path, sessions=("s1",))
    for path in (root / "test").rglob("*.*"):
        path.unlink()
    with pytest.raises(UserError, match="no test set"):
        core50_ni(data=f"folder:{root}")


def test_a_split_that_does_not_cover_the_classes_is_refused(tmp_path):
    root = class_tree(tmp_path)
    with pytest.raises(UserError, match="split=3: 4 classes do not divide"):
        core50_nc(data=f"folder:{root}", split=3)
    with pytest.raises(UserError, match="covers 3 classes; the folder has 4"):
        core50_nc(data=f"folder:{root}", split="2,1")


def test_a_class_with_a_single_image_is_refused(tmp_path):
    root = class_tree(tmp_path, per_class=1)
    with pytest.raises(UserError, match="needs at least 2"):
        core50_nc(data=f"folder:{root}")


def test_building_and_summarizing_a_folder_stream_decodes_no_image(tmp_path, monkeypatch):
    """`data` on a large folder costs the files' headers, not their pixels."""
    root = class_tree(tmp_path)

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    stream = core50_nc(data=f"folder:{root}", split="2,1,1", test_fraction=0.4)
    assert stream.summary()["train_sizes"] == [6, 3, 3]


def test_an_image_is_decoded_resized_and_kept_when_first_used(tmp_path, monkeypatch):
    root = class_tree(tmp_path, classes=("a", "b"), per_class=2)
    stream = core50_nc(data=f"folder:{root}", split="1", test_fraction=0.5, image_size=4)
    dataset = stream.train_stream[0].dataset
    first = dataset[0][0]
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: pytest.fail("decoded twice"))
    assert torch.equal(dataset[0][0], first)
    # the class folders hold flat images: every pixel of a resized one keeps the value
    label = stream.class_names[dataset[0][1]]
    values = {50 * ("a", "b").index(label) + i for i in range(2)}
    pixels = (
        (
            first * torch.tensor(IMAGENET_STD).view(3, 1, 1)
            + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        )
        * 255
    ).round()
    assert pixels.unique().item() in values


def test_an_image_that_cannot_be_decoded_is_named_when_first_used(tmp_path):
    root = class_tree(tmp_path, classes=("a", "b"), per_class=2)
    broken = root / "b" / "img1.png"
    broken.write_bytes(broken.read_bytes()[:50])  # the header survives, the pixels do not
    stream = core50_nc(data=f"folder:{root}", split="1", test_fraction=0.5)
    datasets = [exp.dataset for exp in stream.train_stream] + stream.test_views
    with pytest.raises(UserError, match=r"cannot read image .*b/img1.png"):
        for dataset in datasets:
            for index in range(len(dataset)):
                dataset[index]


def test_an_image_too_large_to_decode_is_refused_from_its_header(tmp_path):
    """A 10000 x 10000 PNG of one colour is a few hundred kB on disk and 300 MB decoded."""
    root = class_tree(tmp_path)
    Image.new("L", (10_000, 10_000)).save(root / "c" / "huge.png")
    with pytest.raises(UserError, match=r"image .*c/huge.png is 10000 x 10000 pixels, more than"):
        core50_nc(data=f"folder:{root}")


def test_a_16_bit_image_is_scaled_not_clipped(tmp_path):
    """Pillow converts a 16-bit grayscale PNG to RGB by clipping at 255: mid-grey (32768 of
    65535) would read as white. The stream reads it as 128 (32768 * 255 / 65535 = 127.5)."""
    from cycl_bench.data.folder import read_image

    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((6, 6), 32768, np.uint16)).save(path)
    with Image.open(path) as image:
        assert image.mode.startswith("I")  # a 16-bit image, as Pillow opens it
    pixels = read_image(path, 4)
    assert pixels.dtype == torch.uint8 and pixels.unique().tolist() == [128]
