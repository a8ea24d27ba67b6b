"""Build the static leaderboard site from validated submissions.

The site works from file:// with no network: local CSS/JS, tables rendered into the HTML,
charts as inline SVG. Jinja2 autoescaping covers every value that comes from a submission.

A build replaces only a folder that an earlier build made (it carries STAMP) or an empty one:
anything else is someone's files, and the build refuses to touch it.

Three tiers: claimed (quoted), reproduced (a results file whose numbers its matrices give) and
verified (its models re-evaluated give its numbers: a record of `leaderboard verify` for the file
as it is now). Reproduced entries are shown per track: real data, and the suite's synthetic
reference streams, in tables of their own, each row labelled.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from cycl_bench import __version__
from cycl_bench.errors import UserError
from cycl_bench.evaluation import metrics
from cycl_bench.evaluation.results import SUMMARY_KEYS
from cycl_bench.leaderboard import svg
from cycl_bench.leaderboard.submission import ReproducedSubmission, Submission
from cycl_bench.leaderboard.table import Row, ranked, row_of, to_csv, to_json
from cycl_bench.leaderboard.verify import VerificationRecord, read_record, record_path

STAMP = ".cycl-bench-site"
TRACKS = ("real", "synthetic")


@dataclass
class Entry:
    submission: Submission
    row: Row
    source_file: Path
    record: VerificationRecord | None = None

    @property
    def page(self) -> str:
        """Path of the entry's page relative to the site root."""
        return f"{self.submission.benchmark}/{self.row.slug}.html"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cycl_bench.leaderboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["percent"] = lambda v, digits=2: "—" if v is None else f"{v * 100:.{digits}f}"
    env.filters["number"] = lambda v, fmt=".3g": "—" if v is None else format(v, fmt)
    env.filters["sort_value"] = lambda v: "" if v is None else repr(float(v))
    return env


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _copy_static(out: Path) -> None:
    target = out / "static"
    target.mkdir(parents=True, exist_ok=True)
    for item in (resources.files("cycl_bench.leaderboard") / "static").iterdir():
        if item.is_file():
            (target / item.name).write_bytes(item.read_bytes())


def _pareto(entries: list[Entry], track: str) -> str | None:
    points = [
        (e.row.name, e.row.train_bitops, e.row.final_accuracy, e.page)
        for e in entries
        if e.row.status == "reproduced" and e.row.track == track and e.row.train_bitops
    ]
    return svg.pareto_plot(points) if points else None


def current_record(
    path: Path, submission: Submission, records: Path | None
) -> VerificationRecord | None:
    """The verification record of the submission file as it is now (None: not verified)."""
    if records is None or not isinstance(submission, ReproducedSubmission):
        return None
    from cycl_bench.export.saved import file_sha256  # torch is loaded only when needed

    record = read_record(record_path(records, submission))
    if record is None or record.submission_sha256 != file_sha256(path):
        return None
    return record


def _entry_charts(submission: ReproducedSubmission) -> dict[str, str]:
    results = submission.results
    matrices = [seed.accuracy_matrix for seed in results.per_seed]
    rows, cols = len(matrices[0]), len(matrices[0][0])
    mean_matrix = [
        [sum(m[i][j] for m in matrices) / len(matrices) for j in range(cols)] for i in range(rows)
    ]
    first = results.per_seed[0]  # a run evaluates every seed after the same experiences
    experiences = [e + 1 for e in metrics.evaluated_rows(matrices[0], first.evaluated_after)]
    curves = [
        metrics.accuracy_so_far(s.accuracy_matrix, results.benchmark.test_sizes, s.evaluated_after)
        for s in results.per_seed
    ]
    return {
        "heatmap": svg.heatmap(mean_matrix, experiences),
        "curve": svg.accuracy_curve(curves, experiences),
    }


def check_output_folder(out: Path) -> None:
    """Raise UserError unless `out` is absent, empty, or a site an earlier build made."""
    if out.is_symlink():
        raise UserError(f"--out {out} is a symbolic link; give a real folder for the site")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / STAMP).is_file():
        raise UserError(
            f"--out {out} holds files that no leaderboard build made; "
            "give a new or empty folder (a build replaces only a site it made)"
        )


def build_site(
    submissions: list[tuple[Path, Submission]], out: Path, records: Path | None = None
) -> list[Path]:
    """Write the site into `out` and return its pages; `records`: the folder of verification
    records (`leaderboard verify`), None for none.

    The site is built in a new folder next to `out` and moved into place at the end, so a
    failed build leaves `out` as it was. Raises UserError when `out` is not ours to replace.
    """
    check_output_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a site is for reading
    try:
        pages = _render(submissions, staging, records)
        (staging / STAMP).write_text("built by `cycl_bench leaderboard build`\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / page.relative_to(staging) for page in pages]


def _tracks(entries: list[Entry]) -> list[dict]:
    """Per track: its verified rows, its other reproduced rows and its plot (real first; the
    synthetic track only when it has entries)."""
    tracks = []
    for track in TRACKS:
        rows = [e.row for e in entries if e.row.status == "reproduced" and e.row.track == track]
        if track != "real" and not rows:
            continue
        tracks.append(
            {
                "name": track,
                "id": "" if track == "real" else f"{track}-",
                "verified": ranked([row for row in rows if row.tier == "verified"]),
                "reproduced": ranked([row for row in rows if row.tier != "verified"]),
                "pareto": _pareto(entries, track),
            }
        )
    return tracks


def _render(
    submissions: list[tuple[Path, Submission]], out: Path, records: Path | None = None
) -> list[Path]:
    env = _environment()
    _copy_static(out)
    by_benchmark: dict[str, list[Entry]] = defaultdict(list)
    for path, submission in submissions:
        record = current_record(path, submission, records)
        entry = Entry(submission, row_of(submission, record), path, record)
        by_benchmark[submission.benchmark].append(entry)
    common = {"version": __version__}
    pages = []
    benchmarks = []
    for name in sorted(by_benchmark):
        entries = by_benchmark[name]
        tracks = _tracks(entries)
        claimed = ranked([e.row for e in entries if e.row.status == "claimed"])
        downloads = {}
        tables = [(f"{t['id']}reproduced", t["verified"] + t["reproduced"]) for t in tracks]
        for kind, rows in (*tables, ("claimed", claimed)):
            for fmt, text in (("csv", to_csv(rows)), ("json", to_json(rows))):
                file_name = f"{name}/{name}-{kind}.{fmt}"
                _write(out / file_name, text)
                downloads[f"{kind}_{fmt}"] = file_name
        page = out / f"{name}.html"
        _write(
            page,
            env.get_template("benchmark.html").render(
                root="",
                benchmark=name,
                tracks=tracks,
                claimed=claimed,
                downloads=downloads,
                **common,
            ),
        )
        pages.append(page)
        counts = {"claimed": len(claimed)}
        for track in tracks:
            counts[f"{track['id']}verified"] = len(track["verified"])
            counts[f"{track['id']}reproduced"] = len(track["reproduced"])
        benchmarks.append({"name": name, **counts})
        for entry in entries:
            raw = f"{name}/{entry.row.slug}.json"
            shutil.copyfile(entry.source_file, out / raw)
            charts = (
                _entry_charts(entry.submission)
                if isinstance(entry.submission, ReproducedSubmission)
                else {}
            )
            page = out / entry.page
            _write(
                page,
                env.get_template("entry.html").render(
                    root="../",
                    benchmark=name,
                    entry=entry.submission.entry,
                    submission=entry.submission,
                    row=entry.row,
                    raw_file=entry.row.slug + ".json",
                    record=entry.record,
                    summary_keys=SUMMARY_KEYS,
                    charts=charts,
                    **common,
                ),
            )
            pages.append(page)
    index = out / "index.html"
    _write(index, env.get_template("index.html").render(root="", benchmarks=benchmarks, **common))
    return [index, *pages]
