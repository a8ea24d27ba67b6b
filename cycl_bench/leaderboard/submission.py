"""The two kinds of submission file and how an entry's file name follows from its content.

Reproduced entries embed a full results file (schema v1 of `cycl_bench.evaluation.results`, as
tightened in `accepted`): the site shows only numbers recomputed from its raw accuracy matrices.
They may list each seed's final model (`models`: sha256 and where to get it), which `leaderboard
verify` re-evaluates: an entry whose models give its last accuracy row is *verified*.
Claimed entries quote summary numbers from a paper or an external leaderboard, with the source
and what it measured.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from typing import Annotated, Final, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from cycl_bench.errors import UserError
from cycl_bench.leaderboard.accepted import AcceptedResults
from cycl_bench.leaderboard.likeness import latin_lookalike

SUBMISSION_VERSION: Final = 1
MAX_NAME_LENGTH = 80


def _http_url(url: str) -> str:
    """Only http(s) links reach the site: no javascript:, data: or relative URLs."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("links must be absolute http:// or https:// URLs")
    if any(ch.isspace() or ch in "\"'<>`" for ch in url):
        raise ValueError("links must not contain spaces, quotes or angle brackets")
    return url


def _entry_name(name: str) -> str:
    if name != name.strip():
        raise ValueError("name must not start or end with spaces")
    if re.search(r"\.\.[/\\]|^[/\\]", name):
        raise ValueError("name must not look like a file path ('../' or a leading '/')")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ValueError("name must not contain control characters")
    if not slugify(name):
        raise ValueError("name needs at least one letter or digit")
    return name


HttpUrl = Annotated[str, Field(max_length=2000), AfterValidator(_http_url)]
EntryName = Annotated[
    str, Field(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_entry_name)
]
Text = Annotated[str, Field(max_length=2000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EntryInfo(_Model):
    """Who made the entry and where to read about it; shown on the entry's page."""

    name: EntryName
    authors: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1)
    paper_url: HttpUrl | None = None
    code_url: HttpUrl | None = None
    license: Annotated[str, Field(max_length=100)] = ""
    hardware: Annotated[str, Field(max_length=200)] = ""
    date: datetime.date
    description: Text = ""
    # set when the file deliberately replaces an entry already on the base branch
    update: bool = False


class SubmittedModel(_Model):
    """One seed's final model: a saved-model file (a run's `models/<entry>-seed<k>.pt`, or its
    packed form), found as `<benchmark>/<entry slug>-seed<k>.pt` in a models folder or fetched
    from `url`, and accepted only when its sha256 is this one."""

    seed: int = Field(ge=0, le=2**32 - 1)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    url: HttpUrl | None = None


class ReproducedSubmission(_Model):
    submission_version: Literal[1] = SUBMISSION_VERSION
    status: Literal["reproduced"] = "reproduced"
    entry: EntryInfo
    results: AcceptedResults
    # each seed's final model, for `leaderboard verify` (none: the entry stays "reproduced")
    models: list[SubmittedModel] = Field(default_factory=list, max_length=100)

    @property
    def benchmark(self) -> str:
        return self.results.benchmark.name

    @property
    def track(self) -> str:
        """'real' or 'synthetic': the suite's offline reference streams have their own tables."""
        return self.results.benchmark.data_source


class ClaimedNumbers(_Model):
    """Numbers as the source reports them, as fractions in [0, 1]; None where not reported."""

    final_accuracy: float = Field(ge=0, le=1)
    final_accuracy_std: float | None = Field(default=None, ge=0, le=1)
    average_forgetting: float | None = Field(default=None, ge=-1, le=1)
    bwt: float | None = Field(default=None, ge=-1, le=1)
    runs: int | None = Field(default=None, ge=1, le=10_000)


class ClaimSource(_Model):
    citation: Annotated[str, Field(min_length=1, max_length=500)]
    url: HttpUrl


class ClaimedSubmission(_Model):
    submission_version: Literal[1] = SUBMISSION_VERSION
    status: Literal["claimed"] = "claimed"
    entry: EntryInfo
    benchmark: Annotated[str, Field(max_length=100)]
    strategy: Annotated[str, Field(min_length=1, max_length=100)]
    backbone: Annotated[str, Field(min_length=1, max_length=100)]
    weight_bits: int = Field(ge=1, le=32)
    activation_bits: int = Field(ge=1, le=32)
    gradient_bits: int = Field(ge=1, le=32)
    numbers: ClaimedNumbers
    source: ClaimSource
    # what the source measured on (dataset, protocol, model, runs), in words
    measured_on: Annotated[str, Field(min_length=1, max_length=1000)]
    # whether the source's protocol is this benchmark's protocol (else only indicative)
    same_protocol: bool


# the `status` field says which schema applies
Submission = Annotated[ReproducedSubmission | ClaimedSubmission, Field(discriminator="status")]
SUBMISSION = TypeAdapter(Submission)


def slugify(name: str) -> str:
    """A safe file stem: ASCII lower-case letters, digits and single dashes.

    Look-alike letters count as the Latin ones they imitate, so 'Nаive' written with a Cyrillic
    'а' needs the same file as 'Naive'.
    """
    folded = unicodedata.normalize("NFKD", latin_lookalike(name))
    ascii_name = folded.encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:MAX_NAME_LENGTH].strip("-")


def model_file_name(benchmark: str, name: str, seed: int) -> str:
    """`<benchmark>/<slug of the entry name>-seed<k>.pt`, relative to a models folder."""
    return f"{benchmark}/{slugify(name)}-seed{seed}.pt"


def entry_file_name(benchmark: str, name: str) -> str:
    """`<benchmark>/<slug of the entry name>.json`, relative to the submissions folder."""
    slug = slugify(name)
    if not slug:
        raise UserError(f"entry name {name!r} needs a letter or digit")
    return f"{benchmark}/{slug}.json"
