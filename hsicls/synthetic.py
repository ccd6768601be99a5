"""A synthetic but physically plausible hyperspectral scene (the embedded sample, and test fixtures).

The scene is rendered at 4x the output resolution from a material map, then block-averaged,
so pixels on region edges are true linear mixtures. Spectra are analytic reflectance models
over 400-2500 nm: vegetation with a green peak, red edge and leaf-water absorptions; soil with
a rising slope and clay/water features; asphalt dark and flat; concrete bright; red tiles with
an iron-oxide edge; water dark beyond the red. An atmospheric-residual transmission and
band-dependent sensor noise (worst in the 1400/1900 nm water bands) are applied.

Ten land-cover classes on a grid of horizontal and vertical roads, with a meandering river.
Three classes are spatial patterns of other classes' materials (crop rows = alternating
crop/soil stripes, orchard = tree crowns on grass, parking lot = asphalt areas like the roads),
and every pixel carries its own brightness and soil-admixture variation on top of sensor
noise, so a spectral-only classifier confuses them while a spatial-spectral one, which sees
the pattern and averages over neighbours, can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES = [
    "Water",
    "Asphalt road",
    "Bare soil",
    "Meadow",
    "Forest",
    "Crop rows",
    "Orchard",
    "Red-tile roofs",
    "Concrete",
    "Parking lot",
]
PALETTE = [
    (30, 90, 200),
    (60, 60, 60),
    (150, 100, 50),
    (140, 210, 90),
    (20, 110, 40),
    (220, 210, 60),
    (110, 140, 40),
    (200, 60, 40),
    (190, 190, 190),
    (120, 60, 160),
]
WATER, ASPHALT, SOIL, MEADOW, FOREST, CROP, ORCHARD, ROOF, CONCRETE, PARKING = range(1, 11)
# materials (what a hi-res sub-pixel is made of): grass, tree, crop plants, soil, ...
M_WATER, M_ASPHALT, M_SOIL, M_GRASS, M_TREE, M_CROP, M_ROOF, M_CONCRETE = range(8)
CRS_EPSG = 32632  # WGS 84 / UTM zone 32N
ORIGIN = (690000.0, 5336000.0)
PIXEL = 1.5  # metres


@dataclass
class SyntheticScene:
    cube: np.ndarray  # (H, W, B) float32 reflectance
    labels: np.ndarray  # (H, W) uint8, 0 = unlabelled
    wavelengths: np.ndarray  # (B,) nm
    class_names: list[str]
    palette: list[tuple[int, int, int]]


def _g(wl, c, w):
    return np.exp(-0.5 * ((wl - c) / w) ** 2)


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def material_spectra(wl: np.ndarray) -> np.ndarray:
    """``(8, B)`` reflectance of the materials, in ``M_*`` order."""
    x = (wl - 400.0) / 2100.0
    leaf_water = 1 - 0.35 * _g(wl, 1450, 60) - 0.45 * _g(wl, 1940, 80) - 0.12 * _g(wl, 1200, 40) - 0.06 * _g(wl, 980, 30)
    swir = 1 - 0.55 * _sig((wl - 1320) / 60) + 0.15 * _g(wl, 1660, 80) + 0.08 * _g(wl, 2210, 70)

    def veg(nir, green, red_edge):
        vis = 0.03 + green * _g(wl, 550, 30) - 0.015 * _g(wl, 670, 20)
        return np.clip(vis + nir * _sig((wl - red_edge) / 16) * swir * leaf_water, 0.01, None)

    water = np.clip(0.015 + 0.06 * _g(wl, 480, 90) + 0.012 * _g(wl, 800, 40) - 0.01 * x, 0.003, None)
    asphalt = 0.05 + 0.06 * x + 0.01 * _g(wl, 1700, 60) - 0.01 * _g(wl, 2300, 50)
    soil = (
        0.07 + 0.3 * (1 - np.exp(-(wl - 400) / 700)) - 0.05 * _g(wl, 1410, 40) - 0.07 * _g(wl, 1920, 50) - 0.04 * _g(wl, 2200, 30)
    )
    grass = veg(0.42, 0.06, 712)
    tree = veg(0.33, 0.04, 722) * 0.85
    crop = veg(0.50, 0.075, 705)
    roof = 0.05 + 0.22 * _sig((wl - 585) / 22) - 0.05 * _g(wl, 880, 90) + 0.06 * x
    concrete = 0.2 + 0.12 * (1 - np.exp(-(wl - 400) / 300)) - 0.04 * _g(wl, 1920, 60) - 0.03 * _g(wl, 2330, 40)
    return np.stack([water, asphalt, soil, grass, tree, crop, roof, concrete]).astype(np.float64)


def transmission(wl: np.ndarray) -> np.ndarray:
    """Residual atmospheric transmission after correction: deep water-vapour bands at 1400/1900 nm."""
    return 1 - 0.6 * _g(wl, 1390, 35) - 0.75 * _g(wl, 1880, 45) - 0.15 * _g(wl, 1130, 20) - 0.1 * _g(wl, 940, 18)


def _smooth_noise(rng, shape, scale):
    """Smooth random field in [-1, 1] from bilinear-upsampled coarse noise."""
    from scipy.ndimage import zoom

    coarse = rng.uniform(-1, 1, (max(2, shape[0] // scale + 2), max(2, shape[1] // scale + 2)))
    f = zoom(coarse, (shape[0] / coarse.shape[0] + 1e-9, shape[1] / coarse.shape[1] + 1e-9), order=1)
    return f[: shape[0], : shape[1]]


def _draw_roads(cls, mat, scale, admix, h_pos, v_pos, factor: int) -> None:
    """Horizontal roads at ``h_pos``, vertical at ``v_pos`` (output rows/cols); main roads 2 px, minor 1 px."""
    for n, p in enumerate(h_pos):
        w = 2 if n % 2 == 0 else 1
        sl = slice(
            int(p) * factor - w * factor // 2 if w == 2 else int(p) * factor,
            int(p) * factor + (w * factor + 1) // 2 if w == 2 else int(p) * factor + factor,
        )
        cls[sl, :], mat[sl, :], admix[sl, :] = ASPHALT, M_ASPHALT, 0.0
        scale[sl, :] = 1.0
    for n, p in enumerate(v_pos):
        w = 2 if n % 2 == 1 else 1
        sl = slice(
            int(p) * factor - w * factor // 2 if w == 2 else int(p) * factor,
            int(p) * factor + (w * factor + 1) // 2 if w == 2 else int(p) * factor + factor,
        )
        cls[:, sl], mat[:, sl], admix[:, sl] = ASPHALT, M_ASPHALT, 0.0
        scale[:, sl] = 1.0


def make_scene(size: int = 128, bands: int = 120, seed: int = 0, factor: int = 4) -> SyntheticScene:
    """Render a ``size x size x bands`` scene deterministically from ``seed``."""
    rng = np.random.default_rng(seed)
    S = size * factor
    wl = np.linspace(400.0, 2500.0, bands)
    cls = np.zeros((S, S), np.uint8)  # land-cover class per hi-res cell
    mat = np.zeros((S, S), np.uint8)  # material per hi-res cell
    scale = np.ones((S, S))  # brightness (illumination, canopy shadow)
    admix = np.zeros((S, S))  # soil fraction mixed into vegetation

    # Roads on the output grid (so they are pure pixels): main roads 2 px, minor roads 1 px wide.
    n_h, n_v = 3, 3
    h_pos = np.sort(rng.choice(np.arange(size // 8, size - size // 8), n_h, replace=False))
    v_pos = np.sort(rng.choice(np.arange(size // 8, size - size // 8), n_v, replace=False))
    h_pos = _spread(h_pos, size, 12, rng)
    v_pos = _spread(v_pos, size, 12, rng)
    cuts_r = [0] + [int(p) * factor for p in h_pos] + [S]
    cuts_c = [0] + [int(p) * factor for p in v_pos] + [S]

    # Blocks between roads, each cut into irregular parcels with their own class.
    choices = [MEADOW, FOREST, CROP, ORCHARD, SOIL, ROOF, MEADOW, CROP]
    for i in range(len(cuts_r) - 1):
        for j in range(len(cuts_c) - 1):
            r0, r1, c0, c1 = cuts_r[i], cuts_r[i + 1], cuts_c[j], cuts_c[j + 1]
            for pr0, pr1, pc0, pc1 in _parcels(rng, r0, r1, c0, c1):
                k = int(rng.choice(choices))
                _paint(rng, k, cls, mat, scale, admix, pr0, pr1, pc0, pc1, factor)

    # A meandering river crossing the scene top to bottom.
    rows = np.arange(S)
    centre = S * rng.uniform(0.3, 0.7) + S * 0.08 * np.sin(rows / S * 2 * np.pi * rng.uniform(0.8, 1.6) + rng.uniform(0, 6))
    half = factor * rng.uniform(2.0, 3.0)
    cc = np.arange(S)[None, :]
    river = np.abs(cc - centre[:, None]) < half
    cls[river], mat[river], scale[river], admix[river] = WATER, M_WATER, 1.0, 0.0

    _draw_roads(cls, mat, scale, admix, h_pos, v_pos, factor)  # on top: bridges over the river

    scale *= 1 + 0.04 * _smooth_noise(rng, (S, S), 64)  # gentle illumination variation

    # Render: linear mixing inside each output pixel.
    spectra = material_spectra(wl)  # (M, B)
    fractions = np.zeros((spectra.shape[0], size, size))
    for m in range(spectra.shape[0]):
        contrib = np.where(mat == m, scale * (1 - admix), 0.0)
        if m == M_SOIL:
            contrib = contrib + scale * admix
        fractions[m] = contrib.reshape(size, factor, size, factor).mean(axis=(1, 3))
    # Per-pixel variability (within-class spread that neighbours average out): a soil admixture
    # and a brightness factor per pixel, then band-dependent sensor noise.
    jitter = np.clip(0.06 * rng.standard_normal((size, size)), -0.12, 0.12)
    fractions = fractions * (1 - np.abs(jitter))[None]
    fractions[M_SOIL] += np.abs(jitter) * fractions.sum(0) / np.maximum(1 - np.abs(jitter), 1e-6)
    brightness = 1 + 0.07 * rng.standard_normal((size, size, 1))
    refl = np.einsum("mhw,mb->hwb", fractions, spectra) * transmission(wl) * brightness
    sigma = 0.006 + 0.015 * (1 - transmission(wl)) + 0.006 * (_g(wl, 400, 40) + _g(wl, 2500, 80))
    refl = refl * (1 + 0.01 * rng.standard_normal(refl.shape)) + sigma * rng.standard_normal(refl.shape)
    refl = np.clip(refl, 0.0, 1.0).astype(np.float32)

    # Labels: the majority class of a pixel's cells when it covers >= 75 % of them, else 0.
    blocks = cls.reshape(size, factor, size, factor).transpose(0, 2, 1, 3).reshape(size, size, factor * factor)
    counts = np.stack([(blocks == k).sum(-1) for k in range(1, len(CLASS_NAMES) + 1)], -1)
    major = counts.argmax(-1) + 1
    labels = np.where(counts.max(-1) >= 0.75 * factor * factor, major, 0).astype(np.uint8)
    return SyntheticScene(refl, labels, wl, list(CLASS_NAMES), list(PALETTE))


def _spread(pos, size, min_gap, rng):
    """Make road positions at least ``min_gap`` apart (deterministic nudging)."""
    pos = list(pos)
    for i in range(1, len(pos)):
        pos[i] = max(pos[i], pos[i - 1] + min_gap)
    return np.clip(np.array(pos), 4, size - 4)


def _parcels(rng, r0, r1, c0, c1):
    """Cut a block into 1-4 parcels at hi-res positions (irregular edges -> mixed pixels)."""
    h, w = r1 - r0, c1 - c0
    out = []
    if h < 24 or w < 24:
        return [(r0, r1, c0, c1)]
    mode = rng.integers(0, 3)
    if mode == 0:
        return [(r0, r1, c0, c1)]
    if mode == 1:  # split along the longer side
        if h >= w:
            m = int(r0 + h * rng.uniform(0.3, 0.7))
            return [(r0, m, c0, c1), (m, r1, c0, c1)]
        m = int(c0 + w * rng.uniform(0.3, 0.7))
        return [(r0, r1, c0, m), (r0, r1, m, c1)]
    mr = int(r0 + h * rng.uniform(0.3, 0.7))
    mc = int(c0 + w * rng.uniform(0.3, 0.7))
    out = [(r0, mr, c0, mc), (r0, mr, mc, c1), (mr, r1, c0, mc), (mr, r1, mc, c1)]
    return out


def _paint(rng, k, cls, mat, scale, admix, r0, r1, c0, c1, factor):
    region = (slice(r0, r1), slice(c0, c1))
    h, w = r1 - r0, c1 - c0
    cls[region] = k
    bright = rng.uniform(0.9, 1.1)
    scale[region] = bright
    if k == MEADOW:
        mat[region] = M_GRASS
        admix[region] = rng.uniform(0.0, 0.15)
    elif k == SOIL:
        mat[region] = M_SOIL
    elif k == FOREST:
        mat[region] = M_TREE
        scale[region] = bright * (0.8 + 0.2 * _smooth_noise(rng, (h, w), 6))  # canopy shadows
    elif k == CROP:
        period = 4 * factor  # 4 output pixels: 2 of crop, 2 of soil
        phase = int(rng.integers(0, period))
        horizontal = bool(rng.integers(0, 2))
        idx = (np.arange(h) if horizontal else np.arange(w)) + phase
        row = (idx % period) < period // 2
        m = np.where(row, M_CROP, M_SOIL).astype(np.uint8)
        mat[region] = m[:, None] if horizontal else m[None, :]
    elif k == ORCHARD:
        mat[region] = M_GRASS
        admix[region] = rng.uniform(0.0, 0.1)
        spacing = 5 * factor
        radius = 1.3 * factor
        yy, xx = np.mgrid[0:h, 0:w]
        oy, ox = rng.integers(0, spacing, 2)
        dy = (yy + oy) % spacing - spacing / 2
        dx = (xx + ox) % spacing - spacing / 2
        crowns = dy**2 + dx**2 < radius**2
        sub_mat = mat[region]
        sub_mat[crowns] = M_TREE
        sub_adm = admix[region]
        sub_adm[crowns] = 0.0
    elif k == ROOF:  # urban: concrete yards with tiled roofs and asphalt parking lots
        cls[region] = CONCRETE
        mat[region] = M_CONCRETE
        n = max(1, (h * w) // (14 * 14 * factor * factor // 2))
        for count, size, k_cls, k_mat in ((max(1, n // 2), (4, 10), PARKING, M_ASPHALT), (n, (3, 9), ROOF, M_ROOF)):
            for _ in range(count):  # random rectangles inside the block
                bh, bw = rng.integers(size[0] * factor, size[1] * factor, 2)
                if bh >= h or bw >= w:
                    continue
                y0 = r0 + int(rng.integers(0, h - bh))
                x0 = c0 + int(rng.integers(0, w - bw))
                cls[y0 : y0 + bh, x0 : x0 + bw] = k_cls
                mat[y0 : y0 + bh, x0 : x0 + bw] = k_mat


def write_scene(scene: SyntheticScene, cube_path, labels_path) -> None:
    """Write the cube (int16 reflectance x 10000, with wavelengths) and labels as GeoTIFFs in EPSG:32632."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import Affine

    h, w, b = scene.cube.shape
    transform = Affine.translation(ORIGIN[0], ORIGIN[1]) @ Affine.scale(PIXEL, -PIXEL)
    crs = CRS.from_epsg(CRS_EPSG)
    common = dict(
        driver="GTiff",
        height=h,
        width=w,
        crs=crs,
        transform=transform,
        compress="deflate",
        tiled=True,
        blockxsize=64,
        blockysize=64,
    )
    data = np.round(scene.cube * 10000).astype(np.int16).transpose(2, 0, 1)
    with rasterio.open(cube_path, "w", count=b, dtype="int16", predictor=2, interleave="pixel", **common) as dst:
        dst.write(data)
        for i, wl in enumerate(scene.wavelengths, start=1):
            dst.set_band_description(i, f"{wl:.1f} nm")
            dst.update_tags(i, wavelength=f"{wl:.2f}", wavelength_units="nm")
        dst.update_tags(SCALE="reflectance x 10000", SOFTWARE="hsicls synthetic sample")
    with rasterio.open(labels_path, "w", count=1, dtype="uint8", nodata=None, **common) as dst:
        dst.write(scene.labels, 1)
        cmap = {0: (0, 0, 0, 0)}
        cmap.update({k: (*rgb, 255) for k, rgb in enumerate(scene.palette, start=1)})
        dst.write_colormap(1, cmap)
        dst.update_tags(1, **{f"CLASS_{k}": n for k, n in enumerate(scene.class_names, start=1)})
