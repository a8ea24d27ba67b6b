from types import SimpleNamespace

import pytest
import torch
from torch import nn

from cycl_bench.quant.cost import TrainingCost
from cycl_bench.quant.schedules import CosineCycleSchedule

# hand count for a 3x8x8 input:
#   stem   Conv2d(3, 8, 3, padding=1):           8*8*8 outputs * 3*3*3  = 13824
#   body   Conv2d(8, 16, 3, stride=2, padding=1): 16*4*4 outputs * 8*3*3 = 18432
#   head   Linear(16, 10):                        10 outputs * 16       = 160
STEM_MACS, BODY_MACS, HEAD_MACS = 13824, 18432, 160
INPUT_SHAPE = (3, 8, 8)


def small_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


class Bits:
    """A precision lookup for plain torch layers: every compute layer at the same bits."""

    def __init__(self, weight_bits=32, act_bits=32, grad_bits=None):
        self.set(weight_bits, act_bits, grad_bits)

    def set(self, weight_bits, act_bits, grad_bits):
        self.value = SimpleNamespace(
            weight_bits=weight_bits, act_bits=act_bits, grad_bits=grad_bits
        )

    def __call__(self, module):
        return self.value if isinstance(module, (nn.Conv2d, nn.Linear)) else None


def test_macs_per_sample_match_the_hand_count():
    cost = TrainingCost(small_model(), INPUT_SHAPE, precision_of=Bits())
    assert [layer.macs_per_sample for layer in cost.layers] == [STEM_MACS, BODY_MACS, HEAD_MACS]
    assert cost.macs_per_sample == STEM_MACS + BODY_MACS + HEAD_MACS


def test_grouped_convolution_counts_macs_per_group():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8))
    cost = TrainingCost(model, (8, 4, 4), precision_of=Bits())
    assert cost.macs_per_sample == 8 * 4 * 4 * 1 * 3 * 3


def test_float_training_step_is_three_products_except_the_stem_input_gradient():
    cost = TrainingCost(small_model(), INPUT_SHAPE, precision_of=Bits())
    cost.step(batch_size=4)
    float_product = 32 * 32
    expected = 4 * float_product * (2 * STEM_MACS + 3 * BODY_MACS + 3 * HEAD_MACS)
    assert cost.total_bitops == expected == cost.fp32_bitops
    assert cost.reduction_vs_fp32 == 0.0


def test_constant_one_bit_training_is_1024_times_cheaper():
    cost = TrainingCost(small_model(), INPUT_SHAPE, precision_of=Bits(1, 1, 1))
    for _ in range(5):
        cost.step(batch_size=2)
    assert cost.total_bitops == 5 * 2 * (2 * STEM_MACS + 3 * BODY_MACS + 3 * HEAD_MACS)
    assert cost.reduction_vs_fp32 == pytest.approx(1 - 1 / 1024, abs=1e-12)


def test_one_bit_forward_with_eight_bit_gradients():
    cost = TrainingCost(small_model(), INPUT_SHAPE, precision_of=Bits(1, 1, 8))
    cost.step(batch_size=1)
    stem = STEM_MACS * (1 * 1 + 1 * 8)  # no input gradient into the image
    rest = (BODY_MACS + HEAD_MACS) * (1 * 1 + 1 * 8 + 1 * 8)
    assert cost.total_bitops == stem + rest


def test_frozen_backbone_costs_the_forward_plus_the_head_weight_gradient():
    model = small_model()
    bits = Bits(1, 1, 8)
    cost = TrainingCost(model, INPUT_SHAPE, precision_of=bits)
    for parameter in model[:-1].parameters():
        parameter.requires_grad_(False)
    cost.step(batch_size=1)
    forward = STEM_MACS + BODY_MACS + HEAD_MACS
    assert cost.total_bitops == forward + HEAD_MACS * 1 * 8
    assert cost.fp32_bitops == 1024 * (forward + HEAD_MACS)


def test_unfreezing_between_steps_is_picked_up():
    model = small_model()
    cost = TrainingCost(model, INPUT_SHAPE, precision_of=Bits(1, 1, 1))
    model.requires_grad_(False)
    frozen = cost.step(batch_size=1)
    model.requires_grad_(True)
    trainable = cost.step(batch_size=1)
    assert frozen == STEM_MACS + BODY_MACS + HEAD_MACS
    assert trainable == 2 * STEM_MACS + 3 * BODY_MACS + 3 * HEAD_MACS


def test_cyclic_schedule_cost_matches_the_hand_computation():
    # 8 cycles of 100 steps: 192 steps at 2 bits, 144 at 3, 136 at 4, 144 at 5, 184 at 6
    steps_at = {2: 192, 3: 144, 4: 136, 5: 144, 6: 184}
    grad_bits = 8
    schedule = CosineCycleSchedule(total_steps=800, min_bits=2, max_bits=6, cycles=8)
    bits = Bits()
    cost = TrainingCost(small_model(), INPUT_SHAPE, precision_of=bits)
    for step in range(800):
        b = schedule(step)
        bits.set(b, b, grad_bits)
        cost.step(batch_size=1)
    expected = sum(
        count
        * (
            STEM_MACS * (b * b + b * grad_bits)
            + (BODY_MACS + HEAD_MACS) * (b * b + 2 * b * grad_bits)
        )
        for b, count in steps_at.items()
    )
    fp32 = 800 * 1024 * (2 * STEM_MACS + 3 * (BODY_MACS + HEAD_MACS))
    assert cost.total_bitops == expected
    assert cost.fp32_bitops == fp32
    assert cost.reduction_vs_fp32 == pytest.approx(1 - expected / fp32)


def test_cost_profiling_leaves_batchnorm_statistics_untouched():
    model = small_model().train()
    before = model[1].running_mean.clone()
    TrainingCost(model, INPUT_SHAPE, precision_of=Bits()).step(batch_size=1)
    assert model.training
    assert model[1].num_batches_tracked.item() == 0
    assert (model[1].running_mean == before).all()


# tiny_bnn at 3x16x16, by hand: stem 3->16 (16x16 out), convs 16->32 s2, 32->64 s2, 64->64,
# classifier 64->4
# tiny_bnn on 16x16 images: 8-bit stem 3->32 at 16x16; binary 3x3 units 32->32 s2 (8x8),
# 32->64 (8x8), 64->64 s2 (4x4), 64->128 (4x4); 8-bit 1x1 shortcut projections where the width
# grows; 8-bit classifier 128->4
TINY_STEM = 16 * 16 * 32 * 3 * 9
TINY_BINARY = [8 * 8 * 32 * 32 * 9, 8 * 8 * 64 * 32 * 9, 4 * 4 * 64 * 64 * 9, 4 * 4 * 128 * 64 * 9]
TINY_PROJECTIONS = [8 * 8 * 64 * 32, 4 * 4 * 128 * 64]
TINY_CLASSIFIER = 128 * 4


def tiny_bnn(mode: str):
    from cycl_bench.registry import BACKBONES

    return BACKBONES.build("tiny_bnn", num_classes=4, image_size=16, precision_mode=mode)


def tiny_step_bitops(binary_bits: int, grad_bits: int) -> int:
    """One sample: 8-bit stem (no input gradient), 8-bit projections and classifier with float
    gradients, binary convolutions at `binary_bits` with `grad_bits` gradients."""
    stem = TINY_STEM * (8 * 8 + 8 * 32)
    eight_bit = (sum(TINY_PROJECTIONS) + TINY_CLASSIFIER) * (8 * 8 + 2 * 8 * 32)
    b = binary_bits
    return stem + eight_bit + sum(TINY_BINARY) * (b * b + 2 * b * grad_bits)


def test_real_binary_backbone_macs_match_the_hand_count():
    cost = TrainingCost(tiny_bnn("cyclebnn"), (3, 16, 16))
    binary, projections = TINY_BINARY, TINY_PROJECTIONS
    assert [layer.macs_per_sample for layer in cost.layers] == [
        TINY_STEM,
        binary[0],
        binary[1],
        projections[0],
        binary[2],
        binary[3],
        projections[1],
        TINY_CLASSIFIER,
    ]


def test_cyclebnn_mode_costs_one_bit_whatever_the_scheduled_bits():
    from cycl_bench.quant.precision import set_precision

    model = tiny_bnn("cyclebnn")
    cost = TrainingCost(model, (3, 16, 16))
    for bits in (1, 4, 6):
        set_precision(model, weight_bits=bits, act_bits=bits, grad_bits=8)
        assert cost.step(batch_size=1) == tiny_step_bitops(1, 8)


def test_cpt_mode_costs_the_scheduled_bits():
    from cycl_bench.quant.precision import set_precision

    model = tiny_bnn("cpt")
    cost = TrainingCost(model, (3, 16, 16))
    for bits in (1, 4, 6):
        set_precision(model, weight_bits=bits, act_bits=bits, grad_bits=8)
        assert cost.step(batch_size=1) == tiny_step_bitops(bits, 8)


# -- the CPT/CycleBNN convention next to the suite's count -----------------------------------

# FP32 reference of one tiny_bnn sample: 32 x 32 for every product; the stem has no input
# gradient, every other layer three products
TINY_FP32_STEP = 1024 * (
    2 * TINY_STEM + 3 * (sum(TINY_BINARY) + sum(TINY_PROJECTIONS) + TINY_CLASSIFIER)
)


def test_two_cyclebnn_steps_at_2_and_6_bits_in_both_conventions():
    """Steps at k = 2 and k = 6 with 8-bit gradients, one sample each. The suite counts what
    the binary convolutions multiply after the sign, 1 x 1 (gradients 1 x 8) at both steps;
    the CPT/CycleBNN convention prices them at k x k forward and k x 8 for each gradient.
    The 8-bit stem, projections and classifier (float gradients) are the same in both."""
    from cycl_bench.quant.precision import scheduled_precision, set_precision

    model = tiny_bnn("cyclebnn")
    suite = TrainingCost(model, (3, 16, 16))
    cpt = TrainingCost(model, (3, 16, 16), precision_of=scheduled_precision)
    for k in (2, 6):
        set_precision(model, weight_bits=k, act_bits=k, grad_bits=8)
        suite.step(batch_size=1)
        cpt.step(batch_size=1)

    fixed = TINY_STEM * (8 * 8 + 8 * 32) + (sum(TINY_PROJECTIONS) + TINY_CLASSIFIER) * (
        8 * 8 + 8 * 32 + 8 * 32
    )
    binary = sum(TINY_BINARY)  # 3,538,944 MACs per sample
    assert suite.total_bitops == 2 * fixed + 2 * binary * (1 * 1 + 1 * 8 + 1 * 8)
    assert cpt.total_bitops == 2 * fixed + binary * (
        (2 * 2 + 2 * 8 + 2 * 8) + (6 * 6 + 6 * 8 + 6 * 8)
    )
    # the same in numbers: fixed 222,068,736; suite 564,461,568 (97.67% below FP32), CPT
    # convention 1,038,680,064 (95.72% below), FP32 24,263,000,064
    assert (suite.total_bitops, cpt.total_bitops) == (564_461_568, 1_038_680_064)
    assert suite.fp32_bitops == cpt.fp32_bitops == 2 * TINY_FP32_STEP == 24_263_000_064
    assert cpt.reduction_vs_fp32 == pytest.approx(1 - cpt.total_bitops / (2 * TINY_FP32_STEP))
    assert suite.reduction_vs_fp32 > cpt.reduction_vs_fp32


def test_in_cpt_mode_both_conventions_agree():
    from cycl_bench.quant.precision import scheduled_precision, set_precision

    model = tiny_bnn("cpt")
    suite = TrainingCost(model, (3, 16, 16))
    cpt = TrainingCost(model, (3, 16, 16), precision_of=scheduled_precision)
    for k in (2, 6):
        set_precision(model, weight_bits=k, act_bits=k, grad_bits=8)
        assert suite.step(batch_size=3) == cpt.step(batch_size=3) == 3 * tiny_step_bitops(k, 8)


# -- the hybrid-quantized head's fixed-point update (continual stage) ------------------------


def hybrid_head_meter(**params):
    """The cost meter of hq_cwr_star on tiny_bnn (16x16, 4 classes), in a later experience:
    everything below the head frozen, as CWR* leaves it."""
    from cycl_bench.continual.costs import TrainingCostMeter
    from cycl_bench.strategies import build_strategy

    model = tiny_bnn("cyclebnn")
    built = build_strategy("hq_cwr_star", model=model, params=params)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("classifier."))
    meter = TrainingCostMeter(built, (3, 16, 16))
    later = SimpleNamespace(clock=SimpleNamespace(train_exp_counter=1))
    meter.before_training_exp(later)
    return built, meter


def test_hybrid_head_update_costs_head_bits_by_head_bits_not_the_stored_grid():
    """head_bits 6, stored weights on a 16-bit grid: the forward x_q . W_q^T and the weight
    gradient delta_q^T . x_q both multiply 6-bit numbers; no product runs at 16 bits."""
    built, meter = hybrid_head_meter(grad_bits=16, head_bits=6, latent_cache=True)
    built.latent_cache.active = True  # head-only epochs on the cached features
    meter.after_training_iteration(SimpleNamespace(mb_y=torch.zeros(5)))
    assert meter.total_bitops == 5 * TINY_CLASSIFIER * (6 * 6 + 6 * 6)
    assert meter.cost.fp32_bitops == 5 * TINY_CLASSIFIER * (32 * 32 + 32 * 32)


def test_hybrid_head_step_without_the_cache_adds_the_frozen_backbone_forward():
    _, meter = hybrid_head_meter(grad_bits=8, head_bits=4, latent_cache=False)
    meter.after_training_iteration(SimpleNamespace(mb_y=torch.zeros(2)))
    backbone_forward = (TINY_STEM + sum(TINY_PROJECTIONS)) * 8 * 8 + sum(TINY_BINARY) * 1 * 1
    assert meter.total_bitops == 2 * (backbone_forward + TINY_CLASSIFIER * (4 * 4 + 4 * 4))
