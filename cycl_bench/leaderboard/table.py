"""One leaderboard row per entry: what the site's tables show and the CSV/JSON downloads hold.

Reproduced rows take every number from the results summary (itself checked against the raw
matrices by the validator); claimed rows carry the source's numbers and leave the rest empty.
A reproduced row's `tier` is "verified" while a verification record says its models give its
numbers for the file as it is (`verify`); its `track` is the data it ran on (real, or the
suite's synthetic reference streams, never ranked together).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, TypedDict

from cycl_bench.leaderboard.submission import (
    ClaimedSubmission,
    ReproducedSubmission,
    Submission,
    slugify,
)

if TYPE_CHECKING:
    from cycl_bench.leaderboard.verify import VerificationRecord


@dataclass
class Row:
    name: str
    slug: str
    status: str  # "reproduced" | "claimed"
    strategy: str
    backbone: str
    weight_bits: int
    activation_bits: int
    gradient_bits: int
    final_accuracy: float
    final_accuracy_std: float | None
    average_forgetting: float | None
    bwt: float | None
    bitops_reduction_vs_fp32: float | None
    train_bitops: float | None
    peak_memory_mb: float | None
    runs: int | None
    same_protocol: bool
    source_url: str | None
    deviations: list[str] = field(default_factory=list)
    """how a reproduced entry's parameters depart from its strategy's paper (a variant)"""
    track: str = ""
    """'real' or 'synthetic' for reproduced rows"""
    tier: str = ""
    """'claimed', 'reproduced' or 'verified'"""
    verification: str = ""
    """a reproduced row's: 'verified', 'drifted', 'failed', 'not verified yet', 'no models'"""
    verified_on: str | None = None
    verification_note: str = ""


class _Verification(TypedDict):
    verification: str
    verified_on: str | None
    verification_note: str


def _verification(
    submission: ReproducedSubmission, record: VerificationRecord | None
) -> _Verification:
    if record is None:
        state = "not verified yet" if submission.models else "no models"
        return {"verification": state, "verified_on": None, "verification_note": ""}
    return {
        "verification": record.status,
        "verified_on": record.date,
        "verification_note": record.reason,
    }


def row_of(submission: Submission, record: VerificationRecord | None = None) -> Row:
    """The row of `submission`; `record`: its current verification record, if any."""
    entry = submission.entry
    if isinstance(submission, ReproducedSubmission):
        verification = _verification(submission, record)
        results, summary = submission.results, submission.results.summary
        method = results.method
        return Row(
            name=entry.name,
            slug=slugify(entry.name),
            status="reproduced",
            strategy=method.strategy,
            backbone=method.backbone,
            weight_bits=method.weight_bits,
            activation_bits=method.activation_bits,
            gradient_bits=method.gradient_bits,
            final_accuracy=summary["final_accuracy"].mean,
            final_accuracy_std=summary["final_accuracy"].std,
            average_forgetting=summary["average_forgetting"].mean,
            bwt=summary["bwt"].mean,
            bitops_reduction_vs_fp32=summary["bitops_reduction_vs_fp32"].mean,
            train_bitops=summary["train_bitops"].mean,
            peak_memory_mb=summary["peak_memory_mb"].mean,
            runs=len(results.per_seed),
            same_protocol=True,
            source_url=entry.paper_url or entry.code_url,
            deviations=[item for item in method.deviations if "(paper:" in item],
            track=submission.track,
            tier="verified" if verification["verification"] == "verified" else "reproduced",
            **verification,
        )
    assert isinstance(submission, ClaimedSubmission)
    numbers = submission.numbers
    return Row(
        name=entry.name,
        slug=slugify(entry.name),
        status="claimed",
        strategy=submission.strategy,
        backbone=submission.backbone,
        weight_bits=submission.weight_bits,
        activation_bits=submission.activation_bits,
        gradient_bits=submission.gradient_bits,
        final_accuracy=numbers.final_accuracy,
        final_accuracy_std=numbers.final_accuracy_std,
        average_forgetting=numbers.average_forgetting,
        bwt=numbers.bwt,
        bitops_reduction_vs_fp32=None,
        train_bitops=None,
        peak_memory_mb=None,
        runs=numbers.runs,
        same_protocol=submission.same_protocol,
        source_url=submission.source.url,
        tier="claimed",
    )


def ranked(rows: list[Row]) -> list[Row]:
    """Best final accuracy first; ties by name so the order never depends on file order."""
    return sorted(rows, key=lambda row: (-row.final_accuracy, row.name.lower()))


def _spreadsheet_safe(value: object) -> object:
    """Text a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    fields = list(Row.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = {k: "; ".join(v) if isinstance(v, list) else v for k, v in asdict(row).items()}
        writer.writerow({k: _spreadsheet_safe(v) for k, v in flat.items()})
    return buffer.getvalue()


def to_json(rows: list[Row]) -> str:
    return json.dumps([asdict(row) for row in rows], indent=2) + "\n"
