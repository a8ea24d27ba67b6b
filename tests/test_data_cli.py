"""`python -m cycl_bench data`: a summary for good input, one line and exit 2 for bad input."""

import os
import socket
import subprocess
import sys
import urllib.request

import pytest
from core50_replica import write_core50_replica

from cycl_bench.cli import main

# every download goes through a proxy on a closed local port: it fails at once, the same way
# with or without a network (here there is none), and never fetches a real dataset
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}


def cycl_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cycl_bench", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE},
    )


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)


def user_error(capsys, *args: str) -> str:
    """Run in-process; the command must fail as a user error: exit 2, one line on stderr."""
    assert main(["data", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def replica_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("core50_cli")
    write_core50_replica(root)
    return root


def test_help_describes_the_options(capsys):
    assert main(["data", "--help"]) == 0
    help_text = capsys.readouterr().out
    for flag in ("--data", "--data-root", "--seed", "--option"):
        assert flag in help_text


def test_the_summary_of_a_synthetic_stream_is_labelled_synthetic(capsys):
    assert main(["data", "core50_nc", "--data", "synthetic", "--option", "image_size=16"]) == 0
    out = capsys.readouterr().out
    assert "data_source              synthetic" in out
    assert "classes_per_experience   [10, 5, 5, 5, 5, 5, 5, 5, 5]" in out
    assert "image_shape              [3, 16, 16]" in out
    assert "protocol_hash" in out


def test_the_summary_of_a_real_stream_prepared_from_the_data_root(replica_root, capsys):
    assert main(["data", "core50_ni", "--data-root", str(replica_root), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"data_source": "real"' in out and '"experiences": 8' in out


def test_an_unknown_benchmark_lists_the_known_ones():
    done = cycl_bench("data", "core50_nx")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "unknown benchmark 'core50_nx'" in line
    for name in ("core50_nc", "core50_ni", "split_cifar10", "split_cifar100"):
        assert name in line


def test_an_unwritable_data_root_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    line = user_error(capsys, "core50_nc", "--data-root", str(blocker / "data"))
    assert "is a file, not a folder" in line and "--data-root" in line


def test_a_missing_dataset_file_is_named(replica_root, tmp_path, capsys):
    write_core50_replica(tmp_path)
    (tmp_path / "core50" / "labels.pkl").unlink()
    line = user_error(capsys, "core50_ni", "--data-root", str(tmp_path))
    assert "labels.pkl" in line and str(tmp_path / "core50") in line
    assert "paths.pkl" not in line  # only what is missing


def test_a_corrupt_dataset_file_is_named(tmp_path, capsys):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    (folder / "train").write_bytes(b"\x00" * 10)
    line = user_error(capsys, "split_cifar100", "--data-root", str(tmp_path))
    assert f"{folder / 'train'} is corrupt" in line


def test_an_offline_download_fails_at_the_first_probe_with_the_offline_alternative(
    tmp_path, capsys, monkeypatch
):
    """One connection attempt, then the error: no retries, no download started."""
    attempts = []
    connect = socket.create_connection

    def counted(address, *args, **kwargs):
        attempts.append(address)
        return connect(address, *args, **kwargs)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was started after the host was found unreachable")

    monkeypatch.setattr(socket, "create_connection", counted)
    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    line = user_error(capsys, "split_cifar10", "--data-root", str(tmp_path))
    assert attempts == [("127.0.0.1", 9)]
    assert "cannot download CIFAR-10 (proxy 127.0.0.1:9 unreachable" in line
    assert "cifar-10-python.tar.gz" in line and str(tmp_path) in line
    assert "--data synthetic" in line


def test_a_bad_option_pair_and_an_unknown_option_are_user_errors(capsys):
    assert "is not KEY=VALUE" in user_error(capsys, "core50_nc", "--option", "mini")
    line = user_error(capsys, "core50_nc", "--data", "synthetic", "--option", "images=3")
    assert "unknown option 'images'" in line and "images_per_object" in line


def test_a_bad_data_source_is_a_user_error(capsys):
    assert "use real, synthetic or folder:PATH" in user_error(capsys, "core50_nc", "--data", "fake")
