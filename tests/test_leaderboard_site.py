"""`leaderboard build`: the static site's pages, tables, charts, downloads and escaping."""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_leaderboard_support import make_claimed, make_submission, write_submission

from cycl_bench.cli import main

HOSTILE_NAME = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


class Links(HTMLParser):
    """Every URL-bearing attribute and every script/stylesheet source of a page."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.urls.append(value)


def parse(path) -> Links:
    links = Links()
    links.feed(path.read_text())
    return links


@pytest.fixture
def built(tmp_path):
    submissions = tmp_path / "submissions"
    write_submission(submissions, make_submission("Alpha", level=0.9, train_bitops=2e13))
    write_submission(submissions, make_submission("Beta", level=0.7, train_bitops=5e12))
    write_submission(submissions, make_submission(HOSTILE_NAME, level=0.5, train_bitops=9e13))
    write_submission(submissions, make_claimed(name="Quoted naive"))
    out = tmp_path / "site"
    code = main(["leaderboard", "build", "--submissions", str(submissions), "--out", str(out)])
    assert code == 0
    return out


def test_build_writes_an_index_a_benchmark_page_and_a_page_per_entry(built):
    assert (built / "index.html").is_file()
    assert (built / "core50_nc.html").is_file()
    entry_pages = sorted(p.name for p in (built / "core50_nc").glob("*.html"))
    assert entry_pages == [
        "alpha.html",
        "beta.html",
        "quoted-naive.html",
        "script-alert-x-script-img-src-x-onerror-alert-1.html",
    ]
    assert (built / "static" / "leaderboard.js").is_file()
    assert (built / "static" / "site.css").is_file()


def test_reproduced_and_claimed_rows_are_in_separate_tables_ranked_by_accuracy(built):
    page = (built / "core50_nc.html").read_text()
    reproduced = page.split('id="reproduced"')[1].split("</table>")[0]
    claimed = page.split('id="claimed"')[1].split("</table>")[0]
    assert reproduced.index(">Alpha<") < reproduced.index(">Beta<")
    assert "Quoted naive" not in reproduced
    assert "Quoted naive" in claimed and "Alpha" not in claimed
    assert "reproduced · 3 seeds" in reproduced
    assert "claimed · 10 runs" in claimed


def test_a_script_in_a_method_name_is_shown_as_text(built):
    pages = [built / "core50_nc.html", *(built / "core50_nc").glob("*.html")]
    escaped = (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;"
    )
    for page in pages:
        text = page.read_text()
        assert "<script>alert" not in text and "<img src=x" not in text, page
        assert parse(page).tags.count("script") == 1  # only the site's own script
    assert escaped in (built / "core50_nc.html").read_text()


def test_pages_load_nothing_from_the_network_and_link_only_over_http(built):
    for page in built.rglob("*.html"):
        for url in parse(page).urls:
            scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", url)
            if scheme:
                assert scheme.group(1) in ("http", "https"), (page, url)
            else:
                target = (page.parent / url.split("#")[0]).resolve()
                assert target.is_file(), (page, url)
        text = page.read_text()
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?:', text), page


def test_entry_page_has_heatmap_curve_metadata_and_links(built):
    page = (built / "core50_nc" / "alpha.html").read_text()
    assert page.count("<svg") == 2
    assert 'aria-label="accuracy matrix heatmap' in page
    assert 'aria-label="accuracy after each training experience"' in page
    assert page.count("<rect x=") >= 81  # 9 x 9 cells
    assert '<a href="https://example.org/paper"' in page
    assert "Test Author" in page and "1x test CPU" in page and "MIT" in page
    raw = json.loads((built / "core50_nc" / "alpha.json").read_text())
    assert raw["entry"]["name"] == "Alpha"


def test_claimed_entry_page_shows_its_source(built):
    page = (built / "core50_nc" / "quoted-naive.html").read_text()
    assert "claimed, not reproduced" in page
    assert '<a href="https://example.org/leaderboard"' in page
    assert "another network" in page


def test_benchmark_page_has_a_pareto_plot_of_the_reproduced_entries(built):
    page = (built / "core50_nc.html").read_text()
    svg = page.split('aria-label="Pareto plot')[1].split("</svg>")[0]
    assert svg.count("<circle") == 3
    # Beta is cheapest, Alpha most accurate: both on the front; the hostile entry is beaten
    assert svg.count('fill="#e6550d"') == 2


def test_downloads_hold_every_row(built):
    with (built / "core50_nc" / "core50_nc-reproduced.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["Alpha", "Beta", HOSTILE_NAME]
    assert float(rows[0]["final_accuracy"]) > float(rows[1]["final_accuracy"])
    claimed = json.loads((built / "core50_nc" / "core50_nc-claimed.json").read_text())
    assert [r["name"] for r in claimed] == ["Quoted naive"]
    assert claimed[0]["final_accuracy"] == 0.1075


def test_build_refuses_invalid_submissions(tmp_path, capsys):
    submissions = tmp_path / "submissions"
    write_submission(submissions, make_submission(n_seeds=2))
    out = tmp_path / "site"
    code = main(["leaderboard", "build", "--submissions", str(submissions), "--out", str(out)])
    assert code == 1
    assert "not building" in capsys.readouterr().out
    assert not out.exists()


def test_the_shipped_submissions_build(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    out = tmp_path / "site"
    assert main(["leaderboard", "build", "--out", str(out)]) == 0
    assert {p.name for p in out.glob("*.html")} >= {
        "index.html",
        "core50_nc.html",
        "core50_ni.html",
    }


# -- the output folder: only a site that a build made is ever replaced ---------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


def build(submissions: Path, out: Path) -> int:
    return main(["leaderboard", "build", "--submissions", str(submissions), "--out", str(out)])


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A checkout's leaderboard/ folder: a README and one valid submission."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "leaderboard").mkdir()
    (tmp_path / "leaderboard" / "README.md").write_text("how to submit\n")
    write_submission(tmp_path / "leaderboard" / "submissions", make_submission("Kept"))
    return tmp_path


def test_build_into_the_leaderboard_folder_is_refused_and_touches_nothing(repository, capsys):
    before = snapshot(repository)
    assert main(["leaderboard", "build", "--out", "leaderboard"]) == 2
    assert "overlaps the submissions folder" in capsys.readouterr().err
    assert snapshot(repository) == before


def test_build_into_a_folder_of_other_files_is_refused_and_touches_nothing(repository, capsys):
    other = repository / "docs"
    other.mkdir()
    (other / "notes.md").write_text("mine\n")
    before = snapshot(repository)
    assert build(repository / "leaderboard" / "submissions", other) == 2
    err = capsys.readouterr().err
    assert "holds files that no leaderboard build made" in err and "Traceback" not in err
    assert snapshot(repository) == before


def test_build_into_a_folder_inside_the_submissions_is_refused(repository, capsys):
    submissions = repository / "leaderboard" / "submissions"
    assert build(submissions, submissions / "site") == 2
    assert "overlaps the submissions folder" in capsys.readouterr().err
    assert not (submissions / "site").exists()


def test_build_into_a_file_or_a_link_is_refused(repository, capsys):
    submissions = repository / "leaderboard" / "submissions"
    a_file = repository / "site.html"
    a_file.write_text("mine\n")
    assert build(submissions, a_file) == 2
    assert a_file.read_text() == "mine\n"
    elsewhere = repository / "elsewhere"
    elsewhere.mkdir()
    link = repository / "site"
    link.symlink_to(elsewhere)
    assert build(submissions, link) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


def test_build_fills_an_empty_folder_and_replaces_the_site_it_made(repository):
    submissions = repository / "leaderboard" / "submissions"
    out = repository / "site"
    out.mkdir()
    assert build(submissions, out) == 0
    (out / "stale.html").write_text("left by the first build\n")
    assert build(submissions, out) == 0
    assert not (out / "stale.html").exists()
    assert (out / "core50_nc" / "kept.html").is_file()
    assert [p.name for p in repository.iterdir() if p.name.startswith(".site")] == []


def test_a_failing_build_leaves_the_previous_site_as_it_was(repository, monkeypatch):
    from cycl_bench.leaderboard import site

    submissions = repository / "leaderboard" / "submissions"
    out = repository / "site"
    assert build(submissions, out) == 0
    before = snapshot(out)

    def broken(submissions, out, records=None):
        (out / "half.html").write_text("half a site\n")
        raise RuntimeError("disk full")

    monkeypatch.setattr(site, "_render", broken)
    with pytest.raises(RuntimeError):
        build(submissions, out)
    assert snapshot(out) == before
    assert [p.name for p in repository.iterdir() if p.name.startswith(".site")] == []
