"""Latent layers of every backbone, and the latent replay memory: bit packing, sizes counted by
hand, and AR1*'s replacement rule as its reference code writes it."""

import pytest
import torch

from cycl_bench.errors import UserError
from cycl_bench.quant.precision import set_precision
from cycl_bench.quant.quantizers import binary_sign
from cycl_bench.registry import BACKBONES
from cycl_bench.strategies.latent_replay import (
    LatentCodec,
    LatentReplayBuffer,
    pack_signs,
    replay_split,
    resolve_latent_bits,
    unpack_signs,
)


def backbone(name: str):
    torch.manual_seed(0)
    return BACKBONES.build(name, num_classes=5, width=0.25, image_size=16).eval()


# -- latent layers -------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_split_of_every_backbone_reproduces_its_features_exactly(name):
    model = backbone(name)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    stages = len(model.feature_stages())
    with torch.no_grad():
        features = model.features(x)
        for k in range(1, stages):
            split = model.split(k)
            assert torch.equal(model.pooled(split.upper(split.lower(x))), features), k
            assert len(split.lower) == k and len(split.upper) == stages - k


@pytest.mark.parametrize(
    ("name", "stages"),
    # the stem, then: 4 Bi-Real units; 5 VGG units; 16 residual units (8 BasicBlocks); 7 blocks
    [("tiny_bnn", 5), ("vgg_small_bnn", 6), ("resnet18_bnn", 17), ("reactnet_bnn", 8)],
)
def test_the_stages_are_the_stem_then_each_unit(name, stages):
    assert len(backbone(name).feature_stages()) == stages


@pytest.mark.parametrize("name", BACKBONES.names())
def test_splitting_leaves_the_state_dict_as_it_was(name):
    model = backbone(name)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    model.split(-1)
    model.split(1)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], value) for key, value in before.items())


def test_only_a_binary_vgg_unit_reads_just_the_sign_of_its_input():
    # a VGG unit's input goes to its binary convolution alone; Bi-Real units and ReAct blocks
    # add it through a real-valued shortcut; the stem reads the image
    assert [backbone("vgg_small_bnn").split(k).binary_input for k in range(1, 6)] == [True] * 5
    for name in ("vgg_small_fp", "tiny_bnn", "resnet18_bnn", "reactnet_bnn"):
        model = backbone(name)
        stages = len(model.feature_stages())
        assert not any(model.split(k).binary_input for k in range(1, stages)), name


def test_at_two_bit_activations_a_vgg_unit_reads_values():
    model = backbone("vgg_small_bnn")
    set_precision(model, act_bits=2)
    assert not model.split(-1).binary_input


@pytest.mark.parametrize("latent_layer", [0, 5, -5, 7])
def test_a_latent_layer_outside_the_stage_boundaries_is_a_user_error(latent_layer):
    with pytest.raises(UserError, match="use 1 to 4 or -1 to -4"):
        backbone("tiny_bnn").split(latent_layer)


def test_negative_latent_layers_count_from_the_end():
    model = backbone("tiny_bnn")
    assert model.split(-1).index == 4 and model.split(-4).index == 1


# -- storage ---------------------------------------------------------------------------------


def test_signs_pack_eight_to_a_byte_first_value_highest():
    values = torch.tensor([[0.5, -1.0, 0.0, -0.0, 2.0, -3.0, 1.0, 1.0, -1.0]])
    # +, -, + (0 -> +1), - (-0.0 -> -1, as binary_sign), +, -, +, + | -
    assert pack_signs(values).tolist() == [[0b10101011, 0b00000000]]
    assert torch.equal(unpack_signs(pack_signs(values), 9), binary_sign(values))


def test_unpacked_signs_are_exactly_the_binary_signs():
    values = torch.randn(7, 3, 5, 5)
    flat = values.reshape(7, -1)
    rebuilt = unpack_signs(pack_signs(flat), flat.shape[1])
    assert torch.equal(rebuilt, binary_sign(flat))
    assert set(rebuilt.unique().tolist()) == {-1.0, 1.0}


def filled(bits: int, n: int = 10, shape=(4, 2, 2)) -> LatentReplayBuffer:
    buffer = LatentReplayBuffer(capacity=100, bits=bits)
    torch.manual_seed(0)
    buffer.update(torch.randn(n, *shape), torch.arange(n), experience=0)
    return buffer


def test_one_bit_payload_is_one_thirty_second_of_float_counted_by_hand():
    # 10 patterns of 4 x 2 x 2 = 16 values: 10 * 16 / 8 = 20 bytes at 1 bit, 10 * 16 * 4 = 640
    one_bit, floating, eight_bit = filled(1), filled(32), filled(8)
    assert one_bit.payload_bytes == 20
    assert floating.payload_bytes == 640
    assert eight_bit.payload_bytes == 160
    assert floating.payload_bytes == 32 * one_bit.payload_bytes
    assert one_bit.label_bytes == floating.label_bytes == 10 * 8  # int64, counted apart


def test_a_slice_past_the_end_of_a_one_bit_memory_is_empty():
    latents, labels = filled(1).patterns(10, 20)
    assert latents.shape == (0, 4, 2, 2) and len(labels) == 0


def test_a_pattern_that_does_not_fill_its_last_byte_takes_a_whole_byte():
    # 3 x 1 x 3 = 9 values: 2 bytes per pattern
    assert filled(1, n=5, shape=(3, 1, 3)).payload_bytes == 5 * 2


def test_one_bit_memory_gives_back_the_sign_of_what_a_float_memory_gives_back():
    one_bit, floating = filled(1), filled(32)
    signs, labels = one_bit.patterns(0, 10)
    values, same_labels = floating.patterns(0, 10)
    assert signs.shape == values.shape == (10, 4, 2, 2)
    assert torch.equal(signs, binary_sign(values)) and torch.equal(labels, same_labels)


def test_activations_already_binary_come_back_identical_from_one_bit_and_float():
    torch.manual_seed(3)
    binary = binary_sign(torch.randn(12, 8, 3, 3))
    memories = [LatentReplayBuffer(capacity=50, bits=bits) for bits in (1, 32)]
    for memory in memories:
        torch.manual_seed(0)
        memory.update(binary, torch.arange(12), experience=0)
    (a, la), (b, lb) = (memory.patterns(0, 12) for memory in memories)
    assert torch.equal(a, b) and torch.equal(la, lb)


def test_eight_bit_codes_use_one_power_of_two_step_for_the_memory():
    codec = LatentCodec(8)
    first = torch.tensor([[1.0, -0.5, 0.25]])
    codes = codec.encode(first)
    # max |x| = 1: the smallest power of two s with 127 s >= 1 is 2^-6 = 1/64
    assert codec.step == 2.0**-6 and codes.dtype == torch.int8
    assert codes.tolist() == [[64, -32, 16]]
    later = codec.encode(torch.tensor([[3.0, 0.01]]))  # beyond 127 / 64: clamped
    assert later.tolist() == [[127, 1]] and codec.step == 2.0**-6
    assert torch.equal(codec.decode(codes, 3), first)


@pytest.mark.parametrize(
    ("requested", "binary_input", "bits"),
    [("auto", True, 1), ("auto", False, 8), (1, True, 1), (8, True, 8), (32, False, 32)],
)
def test_auto_stores_one_bit_where_the_layer_reads_signs_and_eight_elsewhere(
    requested, binary_input, bits
):
    assert resolve_latent_bits(requested, binary_input) == bits


def test_one_bit_where_the_layer_reads_values_is_a_user_error():
    with pytest.raises(UserError, match="latent_bits=1 needs a latent layer"):
        resolve_latent_bits(1, binary_input=False)


# -- AR1*'s replacement rule -----------------------------------------------------------------


def tagged(experience: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations that say where they come from: value = 1000 * experience + index; the label
    is 100 + that index, so a pattern and its label can be matched afterwards."""
    index = torch.arange(n, dtype=torch.float32)
    return (1000 * experience + index).view(n, 1, 1, 1), 100 + torch.arange(n)


def reference_memory(capacity: int, experiences: list[int], seed: int):
    """AR1*'s memory written out from its reference code (Avalanche's ar1.py
    `_after_training_exp`, ar1-pytorch's loop): `idxs_cur = randperm(collected)[:h]`, then the
    first experience becomes the memory, a later one's patterns go to `randperm(len)[:h]`, with
    h = min(rm_sz // (i + 1), collected); each pattern with its own label."""
    torch.manual_seed(seed)
    memory_x = memory_y = None
    for i, n in enumerate(experiences):
        x, y = tagged(i, n)
        h = min(capacity // (i + 1), n)
        idxs_cur = torch.randperm(n)[:h]
        if i == 0:
            memory_x, memory_y = x[idxs_cur].clone(), y[idxs_cur].clone()
        else:
            idxs_2_replace = torch.randperm(len(memory_x))[:h]
            for j, idx in enumerate(idxs_2_replace):
                memory_x[idx], memory_y[idx] = x[idxs_cur[j]], y[idxs_cur[j]]
    return memory_x, memory_y


def test_a_full_memory_is_replaced_as_the_reference_does():
    experiences = [40, 15, 15, 15]  # the first experience fills a 30-pattern memory
    expected_x, expected_y = reference_memory(30, experiences, seed=5)
    buffer = LatentReplayBuffer(capacity=30, bits=32)
    torch.manual_seed(5)
    for i, n in enumerate(experiences):
        buffer.update(*tagged(i, n), experience=i)
    x, y = buffer.patterns(0, len(buffer))
    assert torch.equal(x, expected_x) and torch.equal(y, expected_y)


def test_after_experience_i_a_share_of_one_in_i_plus_one_is_the_new_experience():
    buffer = LatentReplayBuffer(capacity=60, bits=32)
    torch.manual_seed(0)
    buffer.update(*tagged(0, 100), experience=0)
    before, _ = buffer.patterns(0, 60)
    buffer.update(*tagged(1, 50), experience=1)
    after, labels = buffer.patterns(0, 60)
    changed = (after != before).flatten()
    assert int(changed.sum()) == 30  # h = min(60 // 2, 50)
    new = after.flatten()[changed]
    assert bool((new >= 1000).all()) and len(new.unique()) == 30  # distinct, of experience 1
    # every pattern kept its own label
    assert torch.equal(labels, 100 + (after.flatten() % 1000).long())
    buffer.update(*tagged(2, 5), experience=2)  # h = min(60 // 3, 5): the 5 there are
    third, _ = buffer.patterns(0, 60)
    assert int((third.flatten() >= 2000).sum()) == 5


def test_a_memory_the_first_experience_left_small_is_replaced_at_most_whole():
    # 40 patterns in a memory of rm_sz 1500: it holds 40; after experience 1 the reference's
    # h = min(1500 // 2, 40) = 40 patterns take all 40 slots
    buffer = LatentReplayBuffer(capacity=1500, bits=32)
    torch.manual_seed(0)
    buffer.update(*tagged(0, 40), experience=0)
    buffer.update(*tagged(1, 60), experience=1)
    x, _ = buffer.patterns(0, len(buffer))
    assert len(buffer) == 40 and bool((x >= 1000).all()) and len(x.unique()) == 40


# -- minibatch split -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "memory", "batch", "split"),
    [
        # CORe50 NICv2-391 with the reference's settings: (300 + 1500) // 128 = 14 minibatches,
        # 300 // 14 = 21 current and 128 - 21 = 107 replayed patterns each
        (300, 1500, 128, (21, 107)),
        # the synthetic NC stream at the experiment's minibatch: 720 // 50 = 14, 240 // 14 = 17
        (240, 480, 50, (17, 33)),
        (20, 20, 8, (4, 4)),
        (10, 0, 8, (8, 0)),  # nothing to replay
        (3, 4, 100, (3, 97)),  # fewer patterns than a minibatch: one minibatch
    ],
)
def test_minibatches_split_current_and_replayed_patterns_as_the_reference(
    samples, memory, batch, split
):
    assert replay_split(samples, memory, batch) == split
