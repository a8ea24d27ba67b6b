"""The per-seed loop: accuracy matrix, metrics, costs, determinism, quietness, precision.
(The scientific ordering of the strategies: test_science.py.)"""

import pytest
import reference_metrics

from cycl_bench.continual.loop import build_model, run_strategy
from cycl_bench.evaluation.results import SeedResult
from cycl_bench.quant.precision import model_size_bytes
from cycl_bench.registry import BENCHMARKS
from cycl_bench.spec import RunSpec

SHORT = {"first_epochs": 1, "epochs": 1, "batch_size": 16, "min_steps": 0}


@pytest.fixture(scope="module")
def nc_stream():
    return BENCHMARKS.build(
        "core50_nc", data="synthetic", seed=0, images_per_object=1, image_size=16
    )


@pytest.fixture(scope="module")
def ni_stream():
    return BENCHMARKS.build(
        "core50_ni", data="synthetic", seed=0, images_per_object=1, image_size=16
    )


def tiny(stream, checkpoint=None, eval_bits=1):
    """The continual stage's tiny_bnn for `stream`."""
    spec = RunSpec.of("tiny_bnn", stream.image_shape, eval_bits=eval_bits)
    return build_model(spec, stream.num_classes, checkpoint)


def run(stream, strategy="hq_cwr_star", params=SHORT, seed=0, **kwargs) -> SeedResult:
    return run_strategy(
        stream,
        RunSpec.of("tiny_bnn", stream.image_shape),
        strategy=strategy,
        params=params,
        checkpoint=None,
        seed=seed,
        **kwargs,
    )


@pytest.fixture(scope="module")
def reported_run(nc_stream):
    calls = []
    result = run(nc_stream, on_experience=lambda index, info: calls.append((index, info)))
    return result, calls


def test_result_holds_the_matrix_its_metrics_and_the_costs(nc_stream, reported_run):
    result, _ = reported_run
    experiences = nc_stream.n_experiences
    assert len(result.accuracy_matrix) == experiences
    assert all(len(row) == experiences for row in result.accuracy_matrix)
    # the matrix-derived numbers, recomputed from the README's formulas by the test
    by_formula = reference_metrics.per_seed(result.accuracy_matrix, nc_stream.test_sizes)
    for key, value in by_formula.items():
        assert getattr(result, key) == pytest.approx(value, abs=1e-12), key
    assert len(result.per_experience) == experiences
    assert result.train_time_s == pytest.approx(sum(c.train_time_s for c in result.per_experience))
    assert result.train_bitops == pytest.approx(sum(c.train_bitops for c in result.per_experience))
    assert result.peak_memory_mb == max(c.peak_memory_mb for c in result.per_experience) > 0
    assert 0 < result.bitops_reduction_vs_fp32 < 1
    assert result.model_size_bytes == model_size_bytes(tiny(nc_stream))


def test_model_trains_with_float_gradients_and_evaluates_at_the_eval_bits(nc_stream, tmp_path):
    """A checkpoint saved by an 8-bit-gradient schedule does not carry its gradient
    quantization into the continual stage; evaluation runs at the deployment precision."""
    import torch

    from cycl_bench.quant.precision import get_precision, set_precision

    pretrained = tiny(nc_stream)
    set_precision(pretrained, weight_bits=3, act_bits=3, grad_bits=8)
    torch.save(pretrained.state_dict(), tmp_path / "backbone.pt")
    assert get_precision(
        build_model(
            RunSpec.of("tiny_bnn", nc_stream.image_shape),
            nc_stream.num_classes,
            tmp_path / "backbone.pt",
        )
    ) == (
        1,
        1,
        32,
    )
    at_two = build_model(
        RunSpec.of("tiny_bnn", nc_stream.image_shape, eval_bits=2),
        nc_stream.num_classes,
        tmp_path / "backbone.pt",
    )
    assert get_precision(at_two) == (2, 2, 32)


def test_hybrid_head_reports_its_fixed_point_update_bits(nc_stream):
    from cycl_bench.strategies import build_strategy

    model = tiny(nc_stream)
    assert build_strategy("hq_cwr_star", model=model, params={"grad_bits": 16}).precision() == (
        1,
        1,
        16,
    )


def test_same_seed_gives_identical_metrics(nc_stream):
    first = run(nc_stream, "replay", seed=3).model_dump()
    second = run(nc_stream, "replay", seed=3).model_dump()
    for key in ("accuracy_matrix", "final_accuracy", "average_forgetting", "bwt", "train_bitops"):
        assert first[key] == second[key]


def test_on_experience_reports_each_row_as_it_happens(nc_stream, reported_run):
    result, calls = reported_run
    assert [index for index, _ in calls] == list(range(nc_stream.n_experiences))
    assert [info["accuracy_row"] for _, info in calls] == result.accuracy_matrix
    assert all(info["train_bitops"] > 0 and info["train_time_s"] > 0 for _, info in calls)
    assert calls[0][1]["latent_cache_bytes"] == 0 < calls[1][1]["latent_cache_bytes"]


def test_latent_cache_saves_backbone_bitops_not_accuracy(nc_stream):
    two_epochs = {**SHORT, "epochs": 2}  # one encoding pass instead of two backbone forwards
    cached = run(nc_stream, params=two_epochs)
    direct = run(nc_stream, params={**two_epochs, "latent_cache": False})
    assert cached.accuracy_matrix == direct.accuracy_matrix
    assert cached.per_experience[0].train_bitops == direct.per_experience[0].train_bitops
    assert cached.train_bitops < direct.train_bitops


def test_domain_incremental_stream_has_one_column(ni_stream):
    result = run(ni_stream, "naive")
    assert [len(row) for row in result.accuracy_matrix] == [1] * ni_stream.n_experiences
    by_formula = reference_metrics.per_seed(result.accuracy_matrix, ni_stream.test_sizes)
    for key, value in by_formula.items():
        assert getattr(result, key) == pytest.approx(value, abs=1e-12), key


def test_training_prints_nothing(nc_stream, capsys):
    run(nc_stream, "ewc")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


class _FrontList(list):
    """A plugin list whose `append` puts the plugin first."""

    def append(self, item):
        self.insert(0, item)


def reverse_plugins(monkeypatch, keep_declared: bool = True):
    """Every strategy built from now on has its plugins in reverse order, the cost meter first;
    with `keep_declared`, those its template declares an order for stay in that order."""
    from cycl_bench.continual import loop

    build_strategy = loop.build_strategy

    def reversed_plugins(*args, **kwargs):
        built = build_strategy(*args, **kwargs)
        declared = getattr(built.template, "plugin_order", ()) if keep_declared else ()
        fixed = [p for p in built.template.plugins if isinstance(p, declared)]
        free = [p for p in built.template.plugins if not isinstance(p, declared)]
        built.template.plugins = _FrontList([*reversed(free), *fixed])
        return built

    monkeypatch.setattr(loop, "build_strategy", reversed_plugins)


@pytest.mark.parametrize("strategy", ["naive", "cwr_star", "hq_cwr_star"])
def test_plugin_order_changes_no_number(nc_stream, monkeypatch, strategy):
    """The cost meter and the plugins no template orders (naive's BatchNorm recalibration) give
    the same matrix and the same BitOPs, experience by experience, in reverse order."""
    params = {**SHORT, "min_steps": 2}
    expected = run(nc_stream, strategy, params=params)
    reverse_plugins(monkeypatch)
    reordered = run(nc_stream, strategy, params=params)
    assert reordered.accuracy_matrix == expected.accuracy_matrix
    assert reordered.train_bitops == expected.train_bitops
    assert [c.train_bitops for c in reordered.per_experience] == [
        c.train_bitops for c in expected.per_experience
    ]


@pytest.mark.parametrize("strategy", ["ar1_star", "hq_cwr_star"])
def test_plugins_that_depend_on_each_other_refuse_another_order(nc_stream, monkeypatch, strategy):
    """AR1*'s and the CWR* family's plugins act on each other's results in one order (the hybrid
    head calibrates on the recalibrated network, AR1* stores latents of the consolidated one):
    their template says which and refuses another, rather than computing something else."""
    reverse_plugins(monkeypatch, keep_declared=False)
    with pytest.raises(RuntimeError, match="plugins out of order; they run as ExperienceProtocol"):
        run(nc_stream, strategy, params=SHORT)
