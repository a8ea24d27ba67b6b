"""The download guard against a real local HTTP server: files arrive, failures are user errors."""

import functools
import http.server
import threading

import pytest
from torchvision.datasets.utils import download_url

from cycl_bench.data.download import downloading, ensure_writable, resolve_data_root
from cycl_bench.errors import UserError


@pytest.fixture
def server(tmp_path, monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    served = tmp_path / "served"
    served.mkdir()
    (served / "labels.pkl").write_bytes(b"payload")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_reachable_file_is_downloaded_into_the_data_root(server, tmp_path):
    root = tmp_path / "root"
    ensure_writable(root)
    url = f"{server}/labels.pkl"
    with downloading("Test", root, ["labels.pkl"], [url]):
        download_url(url, str(root), filename="labels.pkl")
    assert (root / "labels.pkl").read_bytes() == b"payload"


def test_a_failed_download_names_the_folder_files_and_offline_alternative(server, tmp_path):
    url = f"{server}/missing.zip"
    with pytest.raises(UserError) as error:
        with downloading("Test", tmp_path, ["missing.zip"], [url]):
            download_url(url, str(tmp_path), filename="missing.zip")
    message = str(error.value)
    assert "download failed" in message and "missing.zip" in message
    assert str(tmp_path) in message and "--data synthetic" in message


def test_an_unreachable_host_fails_before_any_download(tmp_path, monkeypatch):
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    attempted = []
    with pytest.raises(UserError, match="host 127.0.0.1:9 unreachable"):
        with downloading("Test", tmp_path, ["a.pkl"], ["http://127.0.0.1:9/a.pkl"]):
            attempted.append(True)
    assert not attempted


def test_downloads_go_through_the_configured_proxy(tmp_path, monkeypatch):
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "")
    with pytest.raises(UserError, match="proxy 127.0.0.1:9 unreachable"):
        with downloading("Test", tmp_path, ["a.pkl"], ["https://example.org/a.pkl"]):
            pass


def test_the_data_root_comes_from_the_argument_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CYCL_BENCH_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("CYCL_BENCH_DATA")
    assert resolve_data_root(None).parts[-2:] == ("cycl_bench", "data")
