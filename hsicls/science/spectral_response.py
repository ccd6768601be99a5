"""Moving spectra between sensors: Gaussian spectral response functions (``--resample-bands``).

Every band ``b`` is modelled as a Gaussian response centred on its wavelength ``c_b`` with its FWHM ``f_b``
(``sigma_b = f_b / (2 sqrt(2 ln 2))``). A scene band ``i`` measures the spectrum weighted by its response; the
target band ``j``'s value is estimated as the average of the scene bands weighted by how much the two responses
overlap, the integral of their product, which for Gaussians is itself a Gaussian in the centre distance::

    w_ij = exp(-(c_i - c_j)^2 / (2 (sigma_i^2 + sigma_j^2))) / sqrt(sigma_i^2 + sigma_j^2),   x_j = sum_i w_ij s_i / sum_i w_ij

(scene bands further than 4 combined sigmas add nothing). A target band is **covered** when some scene band lies
within half their FWHMs, ``|c_i - c_j| <= (f_i + f_j) / 2``; a target band no scene band covers is an error naming
the missing range, never an extrapolation.
"""

from __future__ import annotations

import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
REACH = 4.0  # combined sigmas beyond which a scene band's weight is 0


def widths(wavelengths, fwhm) -> np.ndarray:
    """FWHMs (nm), estimated from the band spacing where a sensor records none."""
    c = np.asarray(wavelengths, np.float64)
    if fwhm is not None:
        return np.asarray(fwhm, np.float64)
    order = np.argsort(c)
    gaps = np.diff(c[order])
    spacing = np.empty_like(c)
    if len(c) == 1:
        return np.full(1, 10.0)
    spacing[order] = np.concatenate([[gaps[0]], np.minimum(gaps[:-1], gaps[1:]) if len(gaps) > 1 else [], [gaps[-1]]])
    return np.maximum(spacing, 1e-3)


def srf_matrix(src_wl, src_fwhm, dst_wl, dst_fwhm) -> np.ndarray:
    """``(B_src, B_dst)`` weights, each column summing to 1 (see the module docstring)."""
    cs, cd = np.asarray(src_wl, np.float64), np.asarray(dst_wl, np.float64)
    ss, sd = np.asarray(src_fwhm, np.float64) * FWHM_TO_SIGMA, np.asarray(dst_fwhm, np.float64) * FWHM_TO_SIGMA
    var = ss[:, None] ** 2 + sd[None, :] ** 2
    d2 = (cs[:, None] - cd[None, :]) ** 2
    w = np.exp(-d2 / (2 * var)) / np.sqrt(var)
    w[d2 > (REACH**2) * var] = 0.0
    total = w.sum(axis=0, keepdims=True)
    return w / np.where(total > 0, total, 1.0)


def uncovered(src_wl, src_fwhm, dst_wl, dst_fwhm) -> list[int]:
    """Target bands (0-based) that no scene band covers within half their FWHMs."""
    cs, cd = np.asarray(src_wl, np.float64), np.asarray(dst_wl, np.float64)
    reach = (np.asarray(src_fwhm)[:, None] + np.asarray(dst_fwhm)[None, :]) / 2
    return np.flatnonzero(~(np.abs(cs[:, None] - cd[None, :]) <= reach).any(axis=0)).tolist()


def ranges(wavelengths: list[float]) -> str:
    """``"1340-1460 nm, 1800-1950 nm"``: consecutive sorted wavelengths grouped where the gaps are regular."""
    w = sorted(wavelengths)
    if not w:
        return ""
    groups, start, prev = [], w[0], w[0]
    step = np.median(np.diff(w)) if len(w) > 2 else 50.0
    for v in w[1:]:
        if v - prev > 2.5 * step:
            groups.append((start, prev))
            start = v
        prev = v
    groups.append((start, prev))
    return ", ".join(f"{a:.0f} nm" if a == b else f"{a:.0f}-{b:.0f} nm" for a, b in groups)


class ResampledPixels:
    """A cube's pixels resampled to other bands: ``inner`` read at ``src_numbers``, times ``matrix`` ``(B_src, B_dst)``;
    band ``n`` of the result is column ``n - 1``."""

    def __init__(self, inner, src_numbers: list[int], matrix: np.ndarray):
        self.inner, self.src_numbers, self.matrix = inner, list(src_numbers), np.asarray(matrix, np.float32)

    def reader(self, numbers: list[int]):
        inner = self.inner.reader(self.src_numbers)
        m = self.matrix[:, np.asarray(numbers) - 1]

        def read(r0, r1, c0, c1):
            return np.asarray(inner(r0, r1, c0, c1), np.float32) @ m

        read.close = inner.close  # type: ignore[attr-defined]
        return read

    def nan_bands(self, numbers: list[int]) -> list[int]:
        return []
