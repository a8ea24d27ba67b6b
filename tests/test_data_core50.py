"""Real CORe50 streams: Avalanche's own loader reading a miniature replica of the real files."""

import shutil

import pytest
import torch
from core50_replica import (
    TRAIN_SESSIONS,
    nc_order,
    object_name,
    write_core50_replica,
    write_nicv2_filelists,
)

from cycl_bench.data import protocol_hash, protocol_of
from cycl_bench.data.core50 import (
    core50_nc,
    core50_ni,
    core50_nicv2_79,
    core50_nicv2_196,
    core50_nicv2_391,
)
from cycl_bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cycl_bench.errors import UserError

NICV2 = {79: core50_nicv2_79, 196: core50_nicv2_196, 391: core50_nicv2_391}
# the published NICv2 structure: session 1 of o1, o6, ..., o46, then 390 object sessions in
# batches of 5, 2 or 1 (8 train sessions x 50 objects = 400 object sessions in all)
FIRST_OBJECTS = [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
SESSIONS_PER_BATCH = {79: 5, 196: 2, 391: 1}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("core50_data")
    write_core50_replica(root)
    return root


def first_image(dataset) -> torch.Tensor:
    return dataset[0][0]


def test_ni_has_eight_experiences_of_all_fifty_objects_and_one_shared_test_view(data_root):
    stream = core50_ni(data_root=data_root)
    assert stream.source == "real"
    assert stream.n_experiences == 8
    assert all(classes == list(range(50)) for classes in stream.classes_per_experience)
    assert len(stream.test_views) == 1
    assert stream.test_sizes == [150]  # 3 test sessions x 50 objects x 1 frame


def test_nc_has_nine_experiences_with_ten_then_five_new_classes(data_root):
    stream = core50_nc(data_root=data_root)
    assert [len(c) for c in stream.classes_per_experience] == [10] + [5] * 8
    seen = [c for classes in stream.classes_per_experience for c in classes]
    assert sorted(seen) == list(range(50))


def test_nc_test_views_split_the_single_test_set_by_each_experience_classes(data_root):
    stream = core50_nc(data_root=data_root)
    assert len(stream.benchmark.test_stream) == 1  # what Avalanche gives
    assert len(stream.test_views) == 9
    for classes, view in zip(stream.classes_per_experience, stream.test_views, strict=True):
        assert sorted({int(t) for t in view.targets}) == classes
    assert sum(stream.test_sizes) == len(stream.benchmark.test_stream[0].dataset)


@pytest.mark.parametrize(("mini", "size"), [(False, 128), (True, 32)])
def test_images_have_the_shape_of_the_chosen_tree(data_root, mini, size):
    stream = core50_ni(data_root=data_root, mini=mini)
    assert stream.image_shape == (3, size, size)
    assert first_image(stream.train_stream[0].dataset).shape == (3, size, size)
    assert first_image(stream.test_views[0]).shape == (3, size, size)
    assert stream.protocol["image_size"] == size


def test_category_level_has_ten_classes(data_root):
    stream = core50_ni(data_root=data_root, object_level="false")
    assert stream.num_classes == 10
    assert stream.classes_per_experience[0] == list(range(10))
    assert stream.class_names[0] == "plug_adapter"


def test_object_names_follow_the_labels(data_root):
    assert core50_ni(data_root=data_root).class_names[:2] == ["o1", "o2"]
    order = nc_order(0)  # NC label i is the i-th object of run 0's class order
    names = core50_nc(data_root=data_root).class_names
    assert names == [object_name(obj) for obj in order]


def test_the_train_transform_is_deterministic_unless_augment_is_asked(data_root):
    plain = core50_ni(data_root=data_root, mini=True)
    dataset = plain.train_stream[0].dataset
    assert plain.train_deterministic
    assert torch.equal(first_image(dataset), first_image(dataset))
    augmented = core50_ni(data_root=data_root, mini=True, augment=True)
    assert not augmented.train_deterministic
    assert augmented.protocol == plain.protocol  # augmentation is training, not the stream


def test_the_stream_protocol_is_computable_without_data(data_root):
    stream = core50_nc(data_root=data_root, mini=True)
    assert stream.protocol == protocol_of("core50_nc", mini=True)
    assert stream.protocol_hash == protocol_hash(protocol_of("core50_nc", mini=True))
    assert protocol_of("core50_nc", mini=True) != protocol_of("core50_nc", seed=1, mini=True)


def test_the_stream_seed_is_the_run_and_only_ten_exist(data_root):
    with pytest.raises(UserError, match="run, which must be 0..9"):
        core50_nc(data_root=data_root, seed=10)


def test_a_missing_run_file_list_is_named(data_root):
    with pytest.raises(UserError, match=r"NC_inc/run3/train_batch_00_filelist.txt is missing"):
        core50_nc(data_root=data_root, seed=3)


def test_a_missing_mini_tree_names_the_32x32_archive_avalanche_gets_wrong(tmp_path, monkeypatch):
    for name in ("http_proxy", "https_proxy"):  # a closed local port: never a real download
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "")
    replica = write_core50_replica(tmp_path)
    shutil.rmtree(replica / "core50_32x32")
    with pytest.raises(UserError) as error:
        core50_ni(data_root=tmp_path, mini=True)
    message = str(error.value)
    assert "core50_32x32/ (from core50_32x32.zip)" in message
    assert "core50_128x128" not in message
    assert "--data synthetic" in message


def test_a_corrupt_metadata_file_is_named(tmp_path):
    write_core50_replica(tmp_path)
    (tmp_path / "core50" / "LUP.pkl").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match=r"LUP.pkl is corrupt"):
        core50_ni(data_root=tmp_path, mini=True)


def test_an_unknown_option_lists_the_valid_ones(data_root):
    with pytest.raises(UserError, match="valid options: augment, mini, object_level"):
        core50_ni(data_root=data_root, minni=True)


def object_session(image: torch.Tensor) -> tuple[int, int]:
    """(object index, session) of a replica image, from the colour its corner encodes."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    red, green, _ = ((image[:, -1, -1] * std + mean) * 255).round().int().tolist()
    return red // 5, green // 20


@pytest.mark.parametrize("batches", [79, 196, 391])
def test_nicv2_has_the_published_batches(data_root, batches):
    stream = NICV2[batches](data_root=data_root, mini=True)
    assert (stream.scenario, stream.n_experiences) == ("nic", batches)
    assert stream.protocol["scenario"] == f"nicv2_{batches}"
    sizes = [len(experience.dataset) for experience in stream.train_stream]
    assert sizes == [10] + [SESSIONS_PER_BATCH[batches]] * (batches - 1)  # 1 frame per session
    assert stream.classes_per_experience[0] == FIRST_OBJECTS
    assert len(stream.test_views) == 1
    assert stream.test_sizes == [150]  # one shared test set: 3 test sessions x 50 objects
    assert stream.class_names[:2] == ["o1", "o2"]  # labels are the object numbers


def test_nicv2_uses_every_training_object_session_once_in_temporal_order(data_root):
    stream = core50_nicv2_79(data_root=data_root, mini=True)
    seen = [
        [object_session(image) for image, *_ in experience.dataset]
        for experience in stream.train_stream
    ]
    assert sorted(seen[0]) == [(obj, 1) for obj in FIRST_OBJECTS]
    pairs = [pair for batch in seen for pair in batch]
    assert sorted(pairs) == [(obj, s) for obj in range(50) for s in TRAIN_SESSIONS]
    for obj in range(50):
        assert [s for o, s in pairs if o == obj] == list(TRAIN_SESSIONS)
    labels = [int(y) for experience in stream.train_stream for y in experience.dataset.targets]
    assert labels == [obj for obj, _ in pairs]


def test_nicv2_category_level_lists_are_written_when_the_lists_come_later(tmp_path):
    """Avalanche writes its category-level lists once, on a first load: NICv2 lists downloaded
    after an NI load have none until they are written again."""
    root = write_core50_replica(tmp_path, nicv2=False)
    core50_ni(data_root=tmp_path, mini=True, object_level=False)
    assert (root / "NIC_v2_79_cat").is_dir()  # written then, empty
    write_nicv2_filelists(root)
    stream = core50_nicv2_79(data_root=tmp_path, mini=True, object_level=False)
    assert stream.n_experiences == 79
    assert stream.classes_per_experience[0] == list(range(10))  # one object of each category


def test_missing_nicv2_lists_name_the_nicv2_archive_and_the_offline_source(tmp_path, monkeypatch):
    for name in ("http_proxy", "https_proxy"):  # a closed local port: never a real download
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "")
    write_core50_replica(tmp_path, nicv2=False)
    with pytest.raises(UserError) as error:
        core50_nicv2_391(data_root=tmp_path, mini=True)
    message = str(error.value)
    assert "NIC_v2_391/ (from batches_filelists_NICv2.zip)" in message
    assert "core50_32x32" not in message and "batches_filelists/" not in message
    assert str(tmp_path / "core50") in message and "--data synthetic" in message


def test_a_missing_nicv2_run_names_the_folder_to_download_afresh(data_root):
    with pytest.raises(UserError, match=r"NIC_v2_196/run2/train_batch_00_filelist.txt is missing"):
        core50_nicv2_196(data_root=data_root, seed=2, mini=True)


def test_nicv2_reads_no_image_folders(tmp_path):
    with pytest.raises(UserError, match="use --data real or --data synthetic"):
        core50_nicv2_391(data=f"folder:{tmp_path}")
