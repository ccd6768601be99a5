"""Class colour palettes (RGB, 0-255), index 0 = class 1."""

from __future__ import annotations

import colorsys

# A qualitative palette with well-separated hues, then generated hues beyond it.
_BASE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
]


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours: the 20 base colours, then evenly spaced hues."""
    out = list(_BASE[:n])
    extra = n - len(out)
    for i in range(max(extra, 0)):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.65, 0.55 + 0.4 * ((i // 7) % 2))
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out
