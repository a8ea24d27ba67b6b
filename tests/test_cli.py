"""The command line: every command has --help, `list` shows the registries, user errors exit 2."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_results import make_results

from cycl_bench.cli import COMMANDS, main
from cycl_bench.registry import ALL


def cycl_bench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cycl_bench", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture(scope="module")
def listing(tmp_path_factory) -> subprocess.CompletedProcess:
    """`python -m cycl_bench list`, run once outside the source tree."""
    return cycl_bench("list", cwd=tmp_path_factory.mktemp("elsewhere"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage:" in capsys.readouterr().out


def test_list_shows_every_registered_name_and_the_shipped_experiments(listing):
    done = listing
    assert done.returncode == 0, done.stderr
    for registry in ALL:
        assert f"{registry.plural}:" in done.stdout
        for name in registry.names():
            assert f"  {name}" in done.stdout
    for experiment in ("core50_nc", "core50_ni", "split_cifar10", "split_cifar100"):
        assert f"  {experiment}" in done.stdout


@pytest.mark.parametrize("args", [["list"], ["list", "--details"]])
def test_output_into_a_reader_that_has_gone_ends_quietly(args):
    """`cycl_bench list --details | head -1`: the reader closes the pipe before the command
    writes (here: before it has started), so its first write meets a closed pipe."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cycl_bench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait() == 0
    assert stderr == ""


def parameter_rows(listing: str, entry: str) -> dict[str, list[str]]:
    """The parameter rows `list --details` prints under an entry, by parameter name."""
    lines = listing.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {entry} "))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        if line.startswith("      "):
            name, *rest = line.split()
            rows[name] = rest
    return rows


def test_list_details_shows_every_parameter_with_its_declared_default_and_range():
    done = cycl_bench("list", "--details")
    assert done.returncode == 0, done.stderr
    hybrid = parameter_rows(done.stdout, "hq_cwr_star")
    # the paper's 16-bit stored head weights; 2..32 bits, 32 the plain float update
    assert hybrid["grad_bits"][:7] == ["int", "16", "from", "2", "to", "32", "(32"]
    assert hybrid["rounding"][:4] == ["choice", "nearest", "stochastic,", "nearest"]
    assert hybrid["first_lr"][:4] == ["float", "0.001", ">", "0"]
    assert parameter_rows(done.stdout, "replay")["mem_size"][:6] == [
        "int",
        "500",
        "from",
        "1",
        "to",
        "10000000",
    ]
    assert parameter_rows(done.stdout, "tiny_bnn")["num_classes"][:4] == [
        "int",
        "required",
        ">=",
        "1",
    ]
    folder_nc = parameter_rows(done.stdout, "core50_nc")
    assert folder_nc["test_fraction"][:6] == ["float", "0.2", ">", "0", "and", "<"]
    assert "list --details" not in done.stderr and "Traceback" not in done.stderr


def test_the_console_script_and_the_module_are_the_same_program(listing, tmp_path):
    """The installed `cycl-bench` (next to this interpreter) and `python -m cycl_bench` answer
    the same arguments with the same output and exit code: the listing, and a user error."""
    script = shutil.which("cycl-bench", path=str(Path(sys.executable).parent))
    assert script is not None, "no cycl-bench console script next to the interpreter"

    def installed(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([script, *args], capture_output=True, text=True, cwd=tmp_path)

    def outcome(done: subprocess.CompletedProcess) -> tuple[int, str, str]:
        return done.returncode, done.stdout, done.stderr

    assert listing.returncode == 0 and "strategies:" in listing.stdout
    assert outcome(installed("list")) == outcome(listing)
    error = cycl_bench("run", "no_such_experiment", cwd=tmp_path)
    assert error.returncode == 2 and error.stdout == ""
    assert error.stderr.startswith("error: unknown experiment 'no_such_experiment'")
    assert len(error.stderr.splitlines()) == 1
    assert outcome(installed("run", "no_such_experiment")) == outcome(error)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "core50nc"], "unknown experiment 'core50nc'"),
        (["run", "core50_nc", "seeds"], "malformed override 'seeds'"),
        (["run", "core50_nc", "pretrain.min_bitz=2"], "unknown config key 'pretrain.min_bitz'"),
        (["show", "no/such/results.json"], "no/such/results.json does not exist; give an existing"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(args, message):
    done = cycl_bench(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_show_refuses_a_binary_file_in_one_line(tmp_path, capsys):
    png = tmp_path / "accuracy_curves.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert main(["show", str(png)]) == 2
    assert f"{png} is not a valid results file (binary data" in one_error_line(capsys)


@pytest.mark.parametrize("kind", ["named pipe", "device", "folder"])
def test_show_reads_only_regular_files(tmp_path, capsys, kind):
    """A pipe with no writer would block the read, /dev/zero would never end."""
    if kind == "named pipe":
        path = tmp_path / "results.json"
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path = tmp_path / "results"
        path.mkdir()
    assert main(["show", str(path)]) == 2
    assert f"{path} is not a regular file (a folder, pipe or device)" in one_error_line(capsys)


def test_show_refuses_deeply_nested_json_in_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["show", str(deep)]) == 2
    assert "nested too deeply" in one_error_line(capsys)


def results_with(tmp_path, name: str, change) -> str:
    data = json.loads(make_results().model_dump_json())
    change(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))  # writes NaN and Infinity as JSON's extension does
    return str(path)


@pytest.mark.parametrize("command", ["show", "compare"])
def test_non_finite_numbers_are_refused_with_their_path(tmp_path, capsys, command):
    nan_mean = results_with(
        tmp_path, "nan.json", lambda d: d["summary"]["final_accuracy"].update(mean=float("nan"))
    )
    inf_memory = results_with(
        tmp_path, "inf.json", lambda d: d["per_seed"][0].update(peak_memory_mb=float("inf"))
    )
    for path, where in ((nan_mean, "summary.final_accuracy.mean"), (inf_memory, "peak_memory_mb")):
        out = ["--out", str(tmp_path / "plots")] if command == "compare" else []
        assert main([command, path, *out]) == 2
        line = one_error_line(capsys)
        assert path in line and where in line and "finite number" in line
    assert not (tmp_path / "plots").exists()


def test_compare_refuses_a_summary_the_seeds_do_not_give(tmp_path, capsys):
    good = results_with(tmp_path, "good.json", lambda d: None)
    bad = results_with(tmp_path, "bad.json", lambda d: d["summary"]["bwt"].update(mean=0.1))
    assert main(["compare", good, bad, "--out", str(tmp_path / "plots")]) == 2
    assert "summary.bwt.mean: stored 0.1, the seeds give" in one_error_line(capsys)


PRETRAIN = "pretrain --backbone tiny_bnn --benchmark core50_nc --data synthetic"
SUBMIT = "submit {result} --name N --author A --license MIT --hardware cpu"
FOLDER_OPTIONS = {
    "run --cache-dir": "run core50_nc --data synthetic --fast --out {tmp}/runs",
    "pretrain --out": PRETRAIN,
    "pretrain --cache-dir": PRETRAIN + " --out {tmp}/p",
    "compare --out": "compare {result}",
    "submit --submissions": SUBMIT,
    "submit --models-out": SUBMIT + " --submissions {tmp}/s",
}


@pytest.mark.parametrize("case", FOLDER_OPTIONS)
@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_folder_option_that_is_a_file_is_one_line_before_any_work(tmp_path, capsys, case, where):
    option = case.split()[1]
    command = FOLDER_OPTIONS[case].split()
    result = results_with(tmp_path, "result.json", lambda data: None)
    blocker = tmp_path / "a-file"
    blocker.write_text("mine\n")
    target = blocker if where == "a file" else blocker / "folder"
    args = [a.format(tmp=tmp_path, result=result) for a in command]
    assert main([*args, option, str(target)]) == 2
    line = one_error_line(capsys)
    assert f"{option}: {target}" in line and "a file" in line, line
    assert blocker.read_text() == "mine\n"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("strategy.*.epochs=99999999999999999999", "must be an integer from 1 to 10000"),
        ("strategy.replay.mem_size=100000000000", "must be an integer from 1 to 10000000"),
        ("benchmark.options.synthetic.image_size=100000", "must be an integer from 8 to 1024"),
        ("pretrain.epochs=100000000", "pretrain epochs=100000000 must be at most 10000"),
        ("pretrain.synthetic_images_per_class=10000000", "must be at most 100000"),
    ],
)  # fmt: skip
def test_values_beyond_physical_bounds_are_one_line(tmp_path, capsys, override, message):
    """An epoch count that would run for years or an image size that would allocate 75 GB is
    refused before any work, like any value out of range."""
    args = ["run", "core50_nc", "--data", "synthetic", "--fast", "--out", str(tmp_path / "runs")]
    assert main([*args, "--strategy", "replay", override]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()
