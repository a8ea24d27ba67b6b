"""Procedural images for the offline source: CORe50-like sessions and CIFAR-like classes.

An object is a category-level silhouette (a smooth closed curve shared by every object of the
category) painted with an object-level appearance (two colours near its category's, blended by
a stripe texture of its own frequency and angle). A scene condition places it: background
colour and gradient, lighting gain and colour tint, position, scale and rotation; a
skin-coloured disc (a hand) hides part of it in every image. In the CORe50-like generator
each session draws one condition and every image of the session jitters around it, so a new
session is a genuine domain shift; in the CIFAR-like generator every image draws its own.
Everything comes from `numpy.random.default_rng(seed)`: the same seed gives identical images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CORE50_OBJECTS = 50
CORE50_CATEGORIES = 10
CORE50_SESSIONS = tuple(range(1, 12))
CORE50_TRAIN_SESSIONS = (1, 2, 4, 5, 6, 8, 9, 11)
CORE50_TEST_SESSIONS = (3, 7, 10)

_HARMONICS = np.arange(2, 6)  # silhouette radius r(theta) = base * (1 + sum a_k cos(k theta + p_k))
_PIXEL_NOISE = 0.03


@dataclass
class Objects:
    """What identifies each object: its category's silhouette and its own appearance."""

    category: np.ndarray  # (O,) category of each object
    amplitudes: np.ndarray  # (C, K) silhouette harmonics per category
    phases: np.ndarray  # (C, K)
    color_a: np.ndarray  # (O, 3)
    color_b: np.ndarray  # (O, 3)
    stripe_frequency: np.ndarray  # (O,)
    stripe_angle: np.ndarray  # (O,)


@dataclass
class Conditions:
    """Where and how each image shows its object (one row per image)."""

    background: np.ndarray  # (N, 3)
    background_gradient: np.ndarray  # (N, 3)
    gradient_angle: np.ndarray  # (N,)
    gain: np.ndarray  # (N, 3) lighting: brightness times colour tint
    center: np.ndarray  # (N, 2)
    scale: np.ndarray  # (N,)
    rotation: np.ndarray  # (N,)

    def take(self, index: np.ndarray) -> Conditions:
        return Conditions(**{k: v[index] for k, v in self.__dict__.items()})


def draw_objects(rng: np.random.Generator, categories: int, per_category: int) -> Objects:
    objects = categories * per_category
    category = np.repeat(np.arange(categories), per_category)
    # objects of a category share a main colour, up to a variation of their own
    category_color = rng.uniform(0.2, 0.8, (categories, 3))
    second_color = rng.uniform(0.2, 0.8, (categories, 3))
    return Objects(
        category=category,
        amplitudes=rng.uniform(0.05, 0.3, (categories, len(_HARMONICS))),
        phases=rng.uniform(0, 2 * np.pi, (categories, len(_HARMONICS))),
        color_a=np.clip(category_color[category] + rng.uniform(-0.2, 0.2, (objects, 3)), 0, 1),
        color_b=np.clip(second_color[category] + rng.uniform(-0.3, 0.3, (objects, 3)), 0, 1),
        stripe_frequency=rng.uniform(1.0, 4.0, objects),
        stripe_angle=rng.uniform(0, np.pi, objects),
    )


def draw_conditions(rng: np.random.Generator, n: int) -> Conditions:
    """Independent scene conditions: one per session (CORe50-like) or per image (CIFAR-like)."""
    brightness = rng.uniform(0.8, 1.15, (n, 1))
    tint = rng.uniform(0.9, 1.1, (n, 3))
    return Conditions(
        background=rng.uniform(0.25, 0.75, (n, 3)),
        background_gradient=rng.uniform(-0.25, 0.25, (n, 3)),
        gradient_angle=rng.uniform(0, 2 * np.pi, n),
        gain=brightness * tint,
        center=rng.uniform(-0.3, 0.3, (n, 2)),
        scale=rng.uniform(0.6, 0.9, n),
        rotation=rng.uniform(-0.6, 0.6, n),
    )


def jitter(rng: np.random.Generator, session: Conditions, n: int) -> Conditions:
    """n images of one session: its condition plus small per-image changes (a hand moving)."""
    repeat = session.take(np.zeros(n, dtype=int))
    repeat.center = repeat.center + rng.normal(0, 0.12, (n, 2))
    repeat.scale = repeat.scale * np.exp(rng.normal(0, 0.12, n))
    repeat.rotation = repeat.rotation + rng.normal(0, 0.5, n)
    repeat.gain = repeat.gain * rng.uniform(0.85, 1.15, (n, 1))
    repeat.background = repeat.background + rng.normal(0, 0.1, (n, 3))
    return repeat


def _occlude_with_a_hand(
    rng: np.random.Generator,
    image: np.ndarray,
    xx: np.ndarray,
    yy: np.ndarray,
    conditions: Conditions,
    sharpness: float,
) -> np.ndarray:
    """A skin-coloured disc near the object hides a different part of it in every image."""
    n = len(image)
    center = conditions.center + rng.normal(0, 0.45, (n, 2)) * conditions.scale[:, None]
    radius = rng.uniform(0.2, 0.4, n)[:, None, None]
    distance = np.hypot(xx[None] - center[:, 0, None, None], yy[None] - center[:, 1, None, None])
    hand = 1 / (1 + np.exp(-np.clip((radius - distance) * sharpness, -30, 30)))
    skin = np.array([0.85, 0.65, 0.55])[None] * rng.uniform(0.7, 1.1, (n, 1))
    return hand[:, None] * skin[:, :, None, None] + (1 - hand[:, None]) * image


def render(
    rng: np.random.Generator,
    objects: Objects,
    object_ids: np.ndarray,
    conditions: Conditions,
    image_size: int,
) -> torch.Tensor:
    """uint8 (N, 3, S, S) images of `object_ids` under `conditions` (row i for image i)."""
    axis = np.linspace(-1.0, 1.0, image_size)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    c = conditions
    u = (xx[None] - c.center[:, 0, None, None]) / c.scale[:, None, None]
    v = (yy[None] - c.center[:, 1, None, None]) / c.scale[:, None, None]
    radius = np.hypot(u, v)
    theta = np.arctan2(v, u) - c.rotation[:, None, None]

    category = objects.category[object_ids]
    amplitudes = objects.amplitudes[category][:, :, None, None]
    phases = objects.phases[category][:, :, None, None]
    wave = np.cos(_HARMONICS[None, :, None, None] * theta[:, None] + phases)
    outline = 0.8 * (1 + (amplitudes * wave).sum(axis=1))
    sharpness = image_size / 4
    mask = 1 / (1 + np.exp(-np.clip((outline - radius) * sharpness, -30, 30)))

    # stripes live in object coordinates, so they move, scale and turn with the object
    angle = objects.stripe_angle[object_ids][:, None, None] + c.rotation[:, None, None]
    along = u * np.cos(angle) + v * np.sin(angle)
    frequency = objects.stripe_frequency[object_ids][:, None, None]
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * frequency * along)
    color_a = objects.color_a[object_ids][:, :, None, None]
    color_b = objects.color_b[object_ids][:, :, None, None]
    foreground = color_a * stripes[:, None] + color_b * (1 - stripes[:, None])

    ramp = xx[None] * np.cos(c.gradient_angle)[:, None, None]
    ramp = ramp + yy[None] * np.sin(c.gradient_angle)[:, None, None]
    background = (
        c.background[:, :, None, None] + c.background_gradient[:, :, None, None] * ramp[:, None]
    )

    image = mask[:, None] * foreground + (1 - mask[:, None]) * background
    image = _occlude_with_a_hand(rng, image, xx, yy, c, sharpness)
    image = image * c.gain[:, :, None, None]
    image = image + rng.normal(0, _PIXEL_NOISE, image.shape)
    return torch.from_numpy(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))


@dataclass
class Core50Like:
    """Images per session (object ids as labels) and the shared test set."""

    train: dict[int, tuple[torch.Tensor, list[int]]]  # session -> (images, object ids)
    test: tuple[torch.Tensor, list[int]]
    category_of_object: list[int]


def core50_like(
    seed: int, *, images_per_object: int, test_images_per_object: int, image_size: int
) -> Core50Like:
    """50 objects in 10 categories seen in 11 sessions (train 1,2,4,5,6,8,9,11; test 3,7,10)."""
    rng = np.random.default_rng([seed, 50])
    objects = draw_objects(rng, CORE50_CATEGORIES, CORE50_OBJECTS // CORE50_CATEGORIES)
    sessions = draw_conditions(rng, len(CORE50_SESSIONS))
    per_session: dict[int, tuple[torch.Tensor, list[int]]] = {}
    for index, session in enumerate(CORE50_SESSIONS):
        count = test_images_per_object if session in CORE50_TEST_SESSIONS else images_per_object
        object_ids = np.repeat(np.arange(CORE50_OBJECTS), count)
        conditions = jitter(rng, sessions.take(np.array([index])), len(object_ids))
        images = render(rng, objects, object_ids, conditions, image_size)
        per_session[session] = (images, object_ids.tolist())
    test_images = torch.cat([per_session[s][0] for s in CORE50_TEST_SESSIONS])
    test_targets = [t for s in CORE50_TEST_SESSIONS for t in per_session[s][1]]
    return Core50Like(
        train={s: per_session[s] for s in CORE50_TRAIN_SESSIONS},
        test=(test_images, test_targets),
        category_of_object=objects.category.tolist(),
    )


CORPUS_STREAM = 7919  # the corpus's random stream: no benchmark generator draws from it
CORPUS_CHUNK = 256  # images rendered at once (bounds the memory at large image sizes)


def pretraining_corpus(
    seed: int,
    *,
    categories: int,
    objects_per_category: int,
    images_per_class: int,
    image_size: int,
) -> tuple[torch.Tensor, list[int]]:
    """A generic pretraining source: `categories * objects_per_category` object classes of
    their own (drawn from a random stream that no benchmark uses, so none is a stream object),
    each image under its own scene condition, as the photos of a large generic dataset vary.
    Returns uint8 (N, 3, S, S) images and their class labels, classes interleaved."""
    rng = np.random.default_rng([seed, CORPUS_STREAM])
    objects = draw_objects(rng, categories, objects_per_category)
    labels = np.tile(np.arange(categories * objects_per_category), images_per_class)
    conditions = draw_conditions(rng, len(labels))
    chunks = [
        render(
            rng,
            objects,
            labels[start : start + CORPUS_CHUNK],
            conditions.take(np.arange(start, min(start + CORPUS_CHUNK, len(labels)))),
            image_size,
        )
        for start in range(0, len(labels), CORPUS_CHUNK)
    ]
    return torch.cat(chunks), labels.tolist()


def cifar_like(
    seed: int, *, num_classes: int, train_per_class: int, test_per_class: int, image_size: int
) -> tuple[torch.Tensor, list[int], torch.Tensor, list[int]]:
    """CIFAR-shaped classes: 10 classes with a silhouette each, or 100 in 20 superclasses of 5
    (as CIFAR-100 groups its classes); every image has its own background, light and pose."""
    rng = np.random.default_rng([seed, num_classes])
    per_shape = 1 if num_classes <= 10 else 5
    objects = draw_objects(rng, num_classes // per_shape, per_shape)
    splits = []
    for per_class in (train_per_class, test_per_class):
        labels = np.tile(np.arange(num_classes), per_class)
        conditions = draw_conditions(rng, len(labels))
        splits.append((render(rng, objects, labels, conditions, image_size), labels.tolist()))
    (train_images, train_labels), (test_images, test_labels) = splits
    return train_images, train_labels, test_images, test_labels
