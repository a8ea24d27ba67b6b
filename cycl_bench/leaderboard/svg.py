"""Charts drawn as inline SVG at build time: the site needs no plotting library and no network.

Every piece of text is escaped here; the returned Markup is safe to embed as is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from html import escape

from markupsafe import Markup

FONT = 'font-family="system-ui, sans-serif" font-size="12"'
LIGHT, DARK = (239, 246, 255), (8, 48, 107)


def _colour(value: float) -> str:
    """Blue scale: light for 0, dark for 1."""
    t = min(max(value, 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(LIGHT, DARK, strict=True))
    return f"rgb({r},{g},{b})"


def _svg(width: int, height: int, body: list[str], label: str) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}" {FONT}>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>{escape(text)}</text>'


def heatmap(matrix: list[list[float]], experiences: list[int] | None = None) -> Markup:
    """A[i][j] as a grid: row i = after training experience i, column j = test view j;
    `experiences`: the experience (1-based) each row follows when not every one was evaluated."""
    rows, cols = len(matrix), len(matrix[0])
    experiences = experiences or list(range(1, rows + 1))
    cell = max(22, min(48, 420 // max(rows, cols)))
    left, top = 70, 40
    width, height = left + cols * cell + 10, top + rows * cell + 10
    body = [
        _text(left + cols * cell / 2, 14, "test view"),
        _text(
            14, top + rows * cell / 2, "after experience", extra=_rotate(14, top + rows * cell / 2)
        ),
    ]
    for j in range(cols):
        body.append(_text(left + (j + 0.5) * cell, top - 8, str(j + 1)))
    for i, (row, experience) in enumerate(zip(matrix, experiences, strict=True)):
        y = top + i * cell
        body.append(_text(left - 8, y + cell / 2 + 4, str(experience), anchor="end"))
        for j, value in enumerate(row):
            x = left + j * cell
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_colour(value)}">'
                f"<title>after experience {experience}, test view {j + 1}: "
                f"{value * 100:.2f}%</title></rect>"
            )
            if cell >= 30:
                ink = "#fff" if value > 0.55 else "#111"
                body.append(
                    _text(
                        x + cell / 2, y + cell / 2 + 4, f"{value * 100:.0f}", extra=f'fill="{ink}"'
                    )
                )
    return _svg(width, height, body, "accuracy matrix heatmap, values in percent")


def _rotate(x: float, y: float) -> str:
    return f'transform="rotate(-90 {x:.1f} {y:.1f})"'


class _Axes:
    """Linear (or log10) data-to-pixel mapping for a plot area with margins."""

    def __init__(
        self,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        width: int = 520,
        height: int = 300,
        log_x: bool = False,
    ) -> None:
        self.left, self.right, self.top, self.bottom = 60, 20, 20, 45
        self.width, self.height, self.log_x = width, height, log_x
        self.x0: float
        self.x1: float
        self.x0, self.x1 = (math.log10(v) for v in x_range) if log_x else x_range
        self.y0, self.y1 = y_range
        if self.x1 == self.x0:
            self.x0, self.x1 = self.x0 - 1, self.x1 + 1

    def x(self, value: float) -> float:
        v = math.log10(value) if self.log_x else value
        span = self.width - self.left - self.right
        return self.left + (v - self.x0) / (self.x1 - self.x0) * span

    def y(self, value: float) -> float:
        span = self.height - self.top - self.bottom
        return self.height - self.bottom - (value - self.y0) / (self.y1 - self.y0) * span

    def frame(
        self,
        x_label: str,
        y_label: str,
        x_ticks: Iterable[tuple[float, str]],
        y_ticks: Iterable[tuple[float, str]],
    ) -> list[str]:
        bottom, right = self.height - self.bottom, self.width - self.right
        body = [
            f'<rect x="{self.left}" y="{self.top}" width="{right - self.left}" '
            f'height="{bottom - self.top}" fill="none" stroke="#999"/>'
        ]
        for value, label in y_ticks:
            y = self.y(value)
            body.append(
                f'<line x1="{self.left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            )
            body.append(_text(self.left - 6, y + 4, label, anchor="end"))
        for value, label in x_ticks:
            x = self.x(value)
            body.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#999"/>'
            )
            body.append(_text(x, bottom + 17, label))
        body.append(_text((self.left + right) / 2, self.height - 6, x_label))
        middle = (self.top + bottom) / 2
        body.append(_text(14, middle, y_label, extra=_rotate(14, middle)))
        return body


def _percent_ticks(step: int = 20) -> list[tuple[float, str]]:
    return [(v / 100, f"{v}%") for v in range(0, 101, step)]


def accuracy_curve(curves: list[list[float]], experiences: list[int] | None = None) -> Markup:
    """Accuracy on the test views learned so far, after each experience (`experiences`, 1-based,
    when not every one was evaluated): one thin line per seed and their mean in bold."""
    steps = len(curves[0])
    experiences = experiences or list(range(1, steps + 1))
    axes = _Axes((experiences[0], experiences[-1]), (0.0, 1.0))
    shown = experiences[:: -(-steps // 20)]  # about 20 labels at most
    ticks = [(e, str(e)) for e in shown]
    body = axes.frame("after training experience", "accuracy so far", ticks, _percent_ticks())
    mean = [sum(c[i] for c in curves) / len(curves) for i in range(steps)]
    for curve, style in [(c, 'stroke="#9ecae1" stroke-width="1"') for c in curves] + [
        (mean, 'stroke="#08519c" stroke-width="2.5"')
    ]:
        points = " ".join(
            f"{axes.x(e):.1f},{axes.y(v):.1f}" for e, v in zip(experiences, curve, strict=True)
        )
        body.append(f'<polyline points="{points}" fill="none" {style}/>')
    for experience, value in zip(experiences, mean, strict=True):
        body.append(
            f'<circle cx="{axes.x(experience):.1f}" cy="{axes.y(value):.1f}" r="3" '
            f'fill="#08519c"><title>experience {experience}: {value * 100:.2f}% '
            f"(mean of {len(curves)} seeds)</title></circle>"
        )
    return _svg(axes.width, axes.height, body, "accuracy after each training experience")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and accuracy (higher)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_plot(points: list[tuple[str, float, float, str]]) -> Markup:
    """(label, training BitOPs, final accuracy, link) per entry; the front joined by a line."""
    costs = [cost for _, cost, _, _ in points]
    low, high = 10 ** math.floor(math.log10(min(costs))), 10 ** math.ceil(math.log10(max(costs)))
    axes = _Axes((low, high), (0.0, 1.0), width=640, height=340, log_x=True)
    decades = range(round(math.log10(low)), round(math.log10(high)) + 1)
    ticks = [(10.0**d, f"1e{d}") for d in decades]
    body = axes.frame("training BitOPs (log scale)", "final accuracy", ticks, _percent_ticks())
    front = pareto_front([(cost, acc) for _, cost, acc, _ in points])
    line = " ".join(f"{axes.x(points[i][1]):.1f},{axes.y(points[i][2]):.1f}" for i in front)
    body.append(f'<polyline points="{line}" fill="none" stroke="#e6550d" stroke-dasharray="4 3"/>')
    for index, (label, cost, accuracy, href) in enumerate(points):
        x, y = axes.x(cost), axes.y(accuracy)
        colour = "#e6550d" if index in front else "#3182bd"
        title = f"{label}: {accuracy * 100:.2f}% at {cost:.3g} BitOPs"
        body.append(
            f'<a href="{escape(href)}"><circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}">'
            f"<title>{escape(title)}</title></circle></a>"
        )
        if len(points) <= 12:
            body.append(_text(x + 8, y - 6, label[:28], anchor="start", extra='fill="#333"'))
    return _svg(
        axes.width, axes.height, body, "Pareto plot of final accuracy against training BitOPs"
    )
