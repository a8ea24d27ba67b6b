"""The per-seed loop: accuracy matrix, metrics, costs, determinism, quietness, precision.
(The scientific ordering of the strategies: test_science.py.)"""

import pytest
import reference_metrics

from cycl_bench.continual.loop import build_model, run_strategy
from cycl_bench.evaluation.results import SeedResult
from cycl_bench.registry import BENCHMARKS
from cycl_bench.spec import RunSpec

SHORT = {"first_epochs": 1, "epochs": 1, "batch_size": 16, "min_steps": 0}

# -- the synthetic CORe50 streams below, counted by hand -----------------------------------------
# 50 objects (one class each), 8 training sessions of 1 image per object, 3 test sessions of
# 3 images per object (the benchmark's default). NC: 10 classes, then 8 x 5.
NC_TRAIN_SAMPLES = [10 * 8 * 1] + [5 * 8 * 1] * 8  # 80, then 40 per experience
NC_TEST_SIZES = [10 * 3 * 3] + [5 * 3 * 3] * 8  # 90, then 45 per test view
NI_TEST_SIZES = [50 * 3 * 3]  # one shared test set: 450

# tiny_bnn on 3x16x16 with 50 classes (as test_cost.py counts it for 4 classes): an 8-bit stem
# 3->32 at 16x16, binary 3x3 units 32->32 s2 (8x8), 32->64 (8x8), 64->64 s2 (4x4), 64->128 (4x4),
# 8-bit 1x1 projections 32->64 (8x8) and 64->128 (4x4), an 8-bit bias-free head 128->50.
STEM = 16 * 16 * 32 * 3 * 9
BINARY = 8 * 8 * 32 * 32 * 9 + 8 * 8 * 64 * 32 * 9 + 4 * 4 * 64 * 64 * 9 + 4 * 4 * 128 * 64 * 9
PROJECTIONS = 8 * 8 * 64 * 32 + 4 * 4 * 128 * 64
HEAD = 128 * 50
# BitOPs per sample (MACs x weight bits x activation bits; a backward pass adds the weight and the
# input gradient at weight/activation bits x gradient bits; the stem has no input gradient; the
# continual stage's gradients are float, 32 bits)
TRAIN_STEP = (
    STEM * (8 * 8 + 8 * 32)
    + (PROJECTIONS + HEAD) * (8 * 8 + 2 * 8 * 32)
    + BINARY * (1 * 1 + 2 * 1 * 32)
)
BACKBONE_FORWARD = (STEM + PROJECTIONS) * 8 * 8 + BINARY * 1 * 1
# hq_cwr_star: experience 0 trains the whole network, then a BatchNorm recalibration forward
# (head included) and the hybrid head's calibration forward (backbone only); every later one
# encodes its samples once (latent cache) and runs head-only steps at 8 x 8 bits (the forward
# x_q . W_q^T and the weight gradient delta_q^T . x_q)
HQ_CWR_BITOPS = [
    NC_TRAIN_SAMPLES[0] * (TRAIN_STEP + BACKBONE_FORWARD + HEAD * 8 * 8 + BACKBONE_FORWARD)
]
HQ_CWR_BITOPS += [n * (BACKBONE_FORWARD + HEAD * (8 * 8 + 8 * 8)) for n in NC_TRAIN_SAMPLES[1:]]
# the same work at 32 x 32 bits everywhere (the FP32 reference of bitops_reduction_vs_fp32):
# a training step is a forward, a weight gradient and (above the stem) an input gradient
FP = 32 * 32
ALL_MACS = STEM + BINARY + PROJECTIONS + HEAD
FP32_FIRST = (STEM * 2 + (ALL_MACS - STEM) * 3) * FP + ALL_MACS * FP + (ALL_MACS - HEAD) * FP
FP32_LATER = (ALL_MACS - HEAD) * FP + HEAD * 2 * FP
HQ_CWR_FP32_BITOPS = NC_TRAIN_SAMPLES[0] * FP32_FIRST + sum(NC_TRAIN_SAMPLES[1:]) * FP32_LATER
# its deployed size in bytes (test_export.py counts the same network at width 0.25):
# binary weights 9 * (32*32 + 64*32 + 64*64 + 128*64) = 138240 bits -> 17280 bytes;
# 8-bit weights: stem 32*3*9 + projections 64*32 + 128*64 + head 50*128 = 17504 bytes;
# float32: per-channel weight scales 32 + 64 + 128 + 50 = 274, parameters (4 input-quantizer
# scales, BatchNorm affine 2 * (32 + 32 + 64 + 64 + 64 + 128 + 128) = 1024, thresholds
# 32 + 32 + 64 + 64 = 192, binary output scales 32 + 64 + 64 + 128 = 288) 1508, BatchNorm
# running statistics 2 * 512 = 1024: 2806 float32 = 11224 bytes
TINY_BNN_50_BYTES = 17280 + 17504 + 11224
# the latent cache of a later experience: 40 samples x 128 features, one 8-bit code each
LATENT_CACHE_BYTES = 40 * 128


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
    # the matrix-derived numbers, recomputed from the README's formulas by the test (numpy),
    # weighted by the test views' sizes counted by hand
    by_formula = reference_metrics.per_seed(result.accuracy_matrix, NC_TEST_SIZES)
    for key, value in by_formula.items():
        assert getattr(result, key) == pytest.approx(value, abs=1e-12), key
    assert len(result.per_experience) == experiences
    # the costs: BitOPs and the deployed size counted by hand from the network's layers
    assert [c.train_bitops for c in result.per_experience] == HQ_CWR_BITOPS
    assert result.train_bitops == sum(HQ_CWR_BITOPS) == 53_280_768_000
    assert result.bitops_reduction_vs_fp32 == pytest.approx(
        1 - sum(HQ_CWR_BITOPS) / HQ_CWR_FP32_BITOPS, rel=1e-12
    )
    assert result.model_size_bytes == TINY_BNN_50_BYTES == 46_008
    # the run's time is its experiences' times together; its peak, the highest of theirs
    assert result.train_time_s == pytest.approx(sum(c.train_time_s for c in result.per_experience))
    assert result.peak_memory_mb == max(c.peak_memory_mb for c in result.per_experience) > 0


def test_the_synthetic_streams_have_the_hand_counted_sizes(nc_stream, ni_stream):
    assert [len(e.dataset) for e in nc_stream.train_stream] == NC_TRAIN_SAMPLES
    assert [len(view) for view in nc_stream.test_views] == NC_TEST_SIZES
    assert nc_stream.test_sizes == NC_TEST_SIZES
    assert ni_stream.test_sizes == NI_TEST_SIZES


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
    cache = [info["latent_cache_bytes"] for _, info in calls]
    assert cache == [0] + [LATENT_CACHE_BYTES] * (nc_stream.n_experiences - 1)


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
    by_formula = reference_metrics.per_seed(result.accuracy_matrix, NI_TEST_SIZES)
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
