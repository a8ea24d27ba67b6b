"""Latent replay (Pellegrini et al. 2020): past patterns replayed as activations at a latent
layer, bit-packed where the layer lets them be.

The backbone is cut at a latent layer (`Backbone.split`): the lower stages are frozen, the upper
stages and the head train. The memory holds activations at the latent layer, not images, so a
replayed pattern costs only the upper part of a step. What a stored activation occupies depends
on what the latent layer reads:

- 1 bit per value when the first upper stage reads only the sign of its input (a VGG unit of a
  binary network at 1-bit activations): the sign is packed 8 values per byte and rebuilt as
  +-1, which the upper part turns into exactly what the original activation gives;
- 8 bits otherwise (a Bi-Real or ReAct unit adds its input's value through its shortcut):
  int8 codes `n` with `x = n * step`, one power-of-two step per memory, the smallest that holds
  the largest magnitude of the first experience's activations (later values beyond +-127 steps
  are clamped), as the hybrid head's features are encoded;
- 32 bits (float32) when asked: the activations as computed, as the authors stored them.

`LatentReplayBuffer.payload_bytes` is what the stored activations occupy at that precision;
the labels (int64, `label_bytes`) are counted separately.

Memory update, as AR1*'s reference code (ar1-pytorch `ar1star_lat_replay.py`, Avalanche's
`ar1.py`): the activations of the current patterns are collected during the first epoch of each
experience; after experience i, h = min(rm_sz // (i + 1), collected) of them, chosen at random,
replace h random slots (the first experience fills the memory, with min(rm_sz, its patterns);
h never exceeds what the memory holds). Each activation keeps its own label (Avalanche's AR1
pairs the shuffled activations with the labels in dataset order).

Minibatches after the first experience, as the reference: `cur = N // ((N + rm_sz) // mb)`
current patterns (N of them in the experience, mb the minibatch), concatenated at the latent
layer with the next `mb - cur` patterns of the memory, in memory order (once the memory is
used up, the rest of the epoch has current patterns only).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from pydantic import BeforeValidator
from torch import nn
from torch.utils.data import Dataset

from cycl_bench.errors import UserError
from cycl_bench.quant.gradquant import power_of_two_scale
from cycl_bench.strategies.latent_cache import cpu_rng_untouched
from cycl_bench.strategies.protocol import OrderedPlugins, TrainingProtocol

if TYPE_CHECKING:  # models and strategies are one layer: the contract, not the import
    from cycl_bench.models.common import Backbone, LatentSplit
    from cycl_bench.strategies.hq_cwr import CWRStarHeadPlugin

LATENT_BITS = (1, 8, 32)


def _not_a_flag(value: object) -> object:
    if isinstance(value, bool):  # True == 1: a flag is no bit width
        raise ValueError("must be one of 1, 8, 32, auto")
    return value


LatentBits = Annotated[Literal[1, 8, 32, "auto"], BeforeValidator(_not_a_flag)]
INT8_LEVEL = 127
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def resolve_latent_bits(requested: int | str, binary_input: bool) -> int:
    """The bits a memory stores each value with: `auto` is 1 where the latent layer reads only
    signs, else 8. Asking for 1 bit where the layer reads values is a UserError (the upper part
    would train on something else than what the layer computes on)."""
    if requested == "auto":
        return 1 if binary_input else 8
    if requested == 1 and not binary_input:
        raise UserError(
            "latent_bits=1 needs a latent layer that reads only the sign of its input (a VGG "
            "unit of vgg_small_bnn); this one reads values (a real-valued shortcut): use 8, "
            "32 or auto"
        )
    return int(requested)


def pack_signs(values: torch.Tensor) -> torch.Tensor:
    """(N, D) values -> (N, ceil(D / 8)) uint8: bit 1 for a value the binary sign maps to +1
    (x >= 0, as `binary_sign`, so -0.0 gives 0), first value in the highest bit."""
    positive = ~torch.signbit(values)
    padding = -values.shape[1] % 8
    if padding:
        positive = nn.functional.pad(positive, (0, padding))
    groups = positive.reshape(len(values), -1, 8).to(torch.uint8)
    return (groups * _BIT_WEIGHTS.to(values.device)).sum(dim=2).to(torch.uint8)


def unpack_signs(codes: torch.Tensor, width: int) -> torch.Tensor:
    """`pack_signs` undone: (N, bytes) uint8 -> (N, width) float32 of +-1."""
    bits = (codes.unsqueeze(2) & _BIT_WEIGHTS.to(codes.device)) > 0
    return bits.reshape(len(codes), codes.shape[1] * 8)[:, :width].float().mul_(2).sub_(1)


class LatentCodec:
    """Encodes flattened latent activations at 1, 8 or 32 bits per value."""

    def __init__(self, bits: int) -> None:
        if bits not in LATENT_BITS:
            raise UserError(f"latent_bits={bits!r} must be one of 1, 8, 32 or auto")
        self.bits = bits
        self.step: float | None = None
        """The 8-bit step, fixed by the first activations encoded."""

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        flat = values.detach().reshape(len(values), -1)
        if self.bits == 1:
            return pack_signs(flat)
        if self.bits == 8:
            if self.step is None:
                self.step = float(power_of_two_scale(flat, 8))
            levels = torch.round(flat / self.step).clamp_(-INT8_LEVEL, INT8_LEVEL)
            return levels.to(torch.int8)
        return flat.float().clone()

    def decode(self, codes: torch.Tensor, width: int) -> torch.Tensor:
        if self.bits == 1:
            return unpack_signs(codes, width)
        if self.bits == 8:
            if self.step is None:
                raise ValueError("nothing was encoded at 8 bits yet: the step is not fixed")
            return codes.float() * self.step
        return codes.clone()  # a copy: the memory's own tensor stays private


class LatentReplayBuffer:
    """The replay memory: latent activations (encoded) and their labels."""

    def __init__(self, capacity: int, bits: int) -> None:
        if capacity < 1:
            raise UserError(f"rm_sz={capacity!r} must be a positive integer")
        self.capacity = capacity
        self.codec = LatentCodec(bits)
        self.shape: tuple[int, ...] | None = None
        self.codes: torch.Tensor | None = None
        self.labels = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def bits(self) -> int:
        return self.codec.bits

    @property
    def payload_bytes(self) -> int:
        """Bytes the stored activations occupy (labels not included)."""
        return 0 if self.codes is None else self.codes.numel() * self.codes.element_size()

    @property
    def label_bytes(self) -> int:
        return self.labels.numel() * self.labels.element_size()

    def class_counts(self) -> dict[int, int]:
        return dict(Counter(int(label) for label in self.labels))

    def update(self, activations: torch.Tensor, labels: torch.Tensor, experience: int) -> None:
        """AR1*'s rule after experience `experience` (0-based): the first fills the memory with
        min(capacity, collected) random patterns; a later one puts
        h = min(capacity // (experience + 1), collected) random patterns into h random slots
        (at most as many as the memory holds, when the first experience left it smaller)."""
        collected = len(activations)
        if collected != len(labels):
            raise ValueError("every activation needs its label")
        if self.codes is None:
            keep = torch.randperm(collected)[: min(self.capacity, collected)]
            self.shape = tuple(activations.shape[1:])
            self.codes = self.codec.encode(activations[keep])
            self.labels = labels[keep].to(torch.long).cpu().clone()
            return
        h = min(self.capacity // (experience + 1), collected, len(self))
        chosen = torch.randperm(collected)[:h]
        slots = torch.randperm(len(self))[:h]
        self.codes[slots] = self.codec.encode(activations[chosen])
        self.labels[slots] = labels[chosen].to(torch.long).cpu()

    def patterns(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded activations (in their layer's shape) and labels of slots start..stop-1."""
        if self.codes is None or self.shape is None:
            raise ValueError("the memory is empty: nothing to replay")
        codes, labels = self.codes[start:stop], self.labels[start:stop]
        width = 1
        for size in self.shape:
            width *= size
        return self.codec.decode(codes, width).reshape(len(codes), *self.shape), labels


def replay_split(samples: int, memory: int, batch_size: int) -> tuple[int, int]:
    """(current, replayed) patterns per minibatch after the first experience, the reference's
    rule with `memory` = rm_sz: the current patterns and a full memory end an epoch together (a
    memory holding fewer runs out first; the rest of the epoch has current patterns only)."""
    if memory == 0:
        return batch_size, 0
    minibatches = max(1, (samples + memory) // batch_size)
    current = max(1, samples // minibatches)
    return current, max(0, batch_size - current)


class LatentReplay(SupervisedPlugin):
    """Freezes the lower part, collects latent activations, injects replayed ones, keeps the
    CWR* counts honest, and updates the memory after each experience.

    `freeze_from`: the first experience whose lower part is frozen (0: AR1*, the backbone is
    pretrained; 1: the whole network learns the first experience, as the hybrid CWR* does, and
    the memory is then filled by one pass of that experience through the frozen lower part).
    """

    def __init__(
        self,
        model: Backbone,
        split: LatentSplit,
        buffer: LatentReplayBuffer,
        head_plugin: CWRStarHeadPlugin,
        protocol: TrainingProtocol,
        *,
        freeze_from: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.model = model
        self.split = split
        self.buffer = buffer
        self.head_plugin = head_plugin
        self.protocol = protocol
        self.freeze_from = freeze_from
        self.device = device
        names = {id(module): name for name, module in model.named_modules()}
        self.lower_layers = {names[id(m)] for stage in split.lower for m in stage.modules()}
        self.upper_layers = {names[id(m)] for stage in split.upper for m in stage.modules()}
        self.upper_layers |= {names[id(m)] for m in model.classifier.modules()}
        self.current_batch_size = protocol.batch_size
        self.replay_batch_size = 0
        self.replayed_in_step = 0
        """Replayed patterns in the current minibatch (the rest are current patterns)."""
        self.encoded_samples = 0
        """Patterns the last experience passed through the lower part outside training steps."""
        self._collected: list[torch.Tensor] = []
        self._collected_labels: list[torch.Tensor] = []
        self._replayed: torch.Tensor | None = None
        self._lower_frozen = False

    # -- before and during an experience --------------------------------------------------

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        experience = strategy.clock.train_exp_counter
        self._collected, self._collected_labels = [], []
        self.encoded_samples = 0
        self._lower_frozen = experience >= self.freeze_from
        if self._lower_frozen:
            self.split.lower.eval()
            for parameter in self.split.lower.parameters():
                parameter.requires_grad = False
        if experience > 0 and len(self.buffer):
            self._count_replayed_classes()

    def _count_replayed_classes(self) -> None:
        """AR1*: CWR* consolidates with the replayed patterns counted (cur_j), and the rows of
        every class in the memory are loaded into the head for training."""
        # Avalanche's CWRStarPlugin keeps its per-class pattern counts on the model it trains
        counts = cast("dict[int, int]", self.model.cur_j)
        for label, count in self.buffer.class_counts().items():
            counts[label] += count
        plugin = self.head_plugin
        plugin.cur_class = [label for label in set(counts) if counts[label] > 0]
        plugin.reset_weights(plugin.cur_class)

    def after_train_dataset_adaptation(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        samples = len(strategy.adapted_dataset)
        first = strategy.clock.train_exp_counter == 0
        batch_size = self.protocol.batch_size
        if first or not len(self.buffer):
            self.current_batch_size, self.replay_batch_size = batch_size, 0
        else:
            self.current_batch_size, self.replay_batch_size = replay_split(
                samples, self.buffer.capacity, batch_size
            )
        steps = -(-samples // self.current_batch_size)
        epochs = self.protocol.first_epochs if first else self.protocol.epochs
        strategy.train_epochs = max(epochs, -(-self.protocol.min_steps // steps))

    def before_forward(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        self._replayed = None
        self.replayed_in_step = 0
        if self._collecting(strategy):
            self._collected_labels.append(strategy.mb_y.detach().cpu())
        if not self.replay_batch_size:
            return
        start = strategy.clock.train_epoch_iterations * self.replay_batch_size
        if start >= len(self.buffer):
            return  # the memory is used up for this epoch
        latents, labels = self.buffer.patterns(start, start + self.replay_batch_size)
        self._replayed = latents.to(strategy.device)
        self.replayed_in_step = len(labels)
        labels = labels.to(strategy.device)
        strategy.mbatch[1] = torch.cat((strategy.mb_y, labels))
        tasks = torch.zeros_like(labels, dtype=strategy.mb_task_id.dtype)
        strategy.mbatch[-1] = torch.cat((strategy.mb_task_id, tasks))

    def _collecting(self, strategy: SupervisedTemplate) -> bool:
        return self._lower_frozen and strategy.clock.train_exp_epochs == 0

    def forward(self, strategy: SupervisedTemplate) -> torch.Tensor:
        """Lower part on the current images, the replayed activations appended, upper part
        and head on all of them."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self._lower_frozen):
            latents = self.split.lower(strategy.mb_x)
        if self._collecting(strategy):
            self._collected.append(latents.detach().cpu())
        if self._replayed is not None:
            latents = torch.cat((latents, self._replayed))
        return self.model.classifier(self.model.pooled(self.split.upper(latents)))

    # -- after an experience ---------------------------------------------------------------

    def after_training_exp(self, strategy: SupervisedTemplate, **kwargs: Any) -> None:
        experience = strategy.clock.train_exp_counter
        if self._collected:
            activations = torch.cat(self._collected)
            labels = torch.cat(self._collected_labels)
        else:  # the lower part learned this experience: encode it now that it is fixed
            activations, labels = self._encode(strategy.experience.dataset.train())
            self.encoded_samples = len(labels)
        self._collected, self._collected_labels = [], []
        self._replayed = None
        self.buffer.update(activations, labels, experience)

    @torch.no_grad()
    def _encode(self, dataset: Dataset[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        modes = [module.training for module in self.split.lower.modules()]
        self.split.lower.eval()
        chunks, labels = [], []
        try:
            with cpu_rng_untouched():
                collate = getattr(dataset, "collate_fn", None)
                loader = torch.utils.data.DataLoader(
                    dataset, batch_size=self.protocol.batch_size, shuffle=False, collate_fn=collate
                )
                for batch in loader:
                    chunks.append(self.split.lower(batch[0].to(self.device)).cpu())
                    labels.append(torch.as_tensor(batch[1]))
        finally:
            for module, mode in zip(self.split.lower.modules(), modes, strict=True):
                module.training = mode
        return torch.cat(chunks), torch.cat(labels)


class LatentReplayTemplate(OrderedPlugins, SupervisedTemplate):
    """Avalanche's supervised template whose training forward goes through `LatentReplay`
    (current images through the lower part, replayed activations joined at the latent layer)
    and whose loader gives the reference's share of current patterns per minibatch."""

    latent_replay: LatentReplay
    train_mb_size: int  # Avalanche's, set by its constructor

    def forward(self) -> torch.Tensor:
        if self.is_training:
            return self.latent_replay.forward(self)
        return super().forward()

    def make_train_dataloader(self, **kwargs: Any) -> None:
        full = self.train_mb_size
        self.train_mb_size = self.latent_replay.current_batch_size
        try:
            super().make_train_dataloader(**kwargs)
        finally:
            self.train_mb_size = full
