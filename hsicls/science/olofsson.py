"""Accuracy assessment and area estimation from a reference sample, after Olofsson et al. (2014) and Stehman (2014).

References
----------
* Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder, M. A. (2014). Good practices for
  estimating area and assessing accuracy of land change. Remote Sensing of Environment 148: 42-57 (Eq. 1-10).
* Stehman, S. V. (2014). Estimating area and map accuracy for stratified random sampling when the strata are different
  from the map classes. International Journal of Remote Sensing 35: 4923-4939.

Notation (the paper's): ``q`` classes; ``n_ij`` the sample count of map class ``i`` and reference class ``j``, so the
error matrix has **rows = map class, columns = reference class**; ``n_i.`` the row total (the sample size of stratum
``i``); ``n_.j`` the column total; ``N_i`` the number of map pixels of class ``i`` (the stratum size); ``W_i = N_i / N``
the mapped area proportion; ``p̂_ij`` the estimated area proportion of cell ``(i, j)``.

Every ``*_ci95`` value is the half-width of a 95 % normal-approximation interval, ``1.96 × standard error`` (the paper
uses ``z = 1.96``). Values that are undefined (no samples, a zero denominator, a stratum of one sample for a variance)
are ``None``; nothing here raises ``ZeroDivisionError`` or emits a numpy warning for them.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

Z95 = 1.96
ORIENTATION = "rows = map class, columns = reference class (Olofsson et al. 2014)"
SAMPLINGS = ("stratified", "random")


def error_matrix(map_codes: np.ndarray, ref_codes: np.ndarray, classes: list[int]) -> np.ndarray:
    """Sample error matrix ``n_ij``: ROWS = map class ``i``, COLUMNS = reference class ``j`` (Olofsson et al. 2014, Table 8).

    ``map_codes`` and ``ref_codes`` are arrays of the same shape (any shape, e.g. ``(N,)`` or ``(H, W)``) holding the map
    and the reference class code of each sample pixel. ``classes`` (length ``q``) fixes which codes count and the order
    of rows and columns. A pixel whose map **or** reference code is not in ``classes`` (no-data, unlabelled) is ignored.
    Returns an ``int64`` array of shape ``(q, q)``.
    """
    m = np.asarray(map_codes).ravel()
    r = np.asarray(ref_codes).ravel()
    if np.asarray(map_codes).shape != np.asarray(ref_codes).shape:
        raise ValueError(f"map_codes {np.shape(map_codes)} and ref_codes {np.shape(ref_codes)} differ in shape")
    cls = np.asarray(list(classes))
    q = cls.size
    if q == 0:
        raise ValueError("classes is empty")
    if np.unique(cls).size != q:
        raise ValueError(f"classes has duplicates: {list(classes)}")
    order = np.argsort(cls, kind="stable")
    ordered = cls[order]

    def index(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.clip(np.searchsorted(ordered, codes), 0, q - 1)
        return order[pos], ordered[pos] == codes

    mi, m_ok = index(m)
    ri, r_ok = index(r)
    keep = m_ok & r_ok
    flat = np.bincount(mi[keep] * q + ri[keep], minlength=q * q)
    return flat.reshape(q, q).astype(np.int64)


def assess(
    n: np.ndarray,
    mapped_pixels: np.ndarray | None = None,
    pixel_area: float = 1.0,
    area_unit: str = "pixels",
    sampling: str = "stratified",
    codes: list[int] | None = None,
    names: list[str] | None = None,
) -> dict:
    """Accuracy and (when ``mapped_pixels`` is given) area estimates from a sample error matrix, as a JSON-ready dict.

    ``n``: ``(q, q)`` sample counts, rows = map class, columns = reference class (see :func:`error_matrix`).
    ``mapped_pixels``: ``(q,)`` map pixel count per map class (the strata sizes ``N_i``); ``W_i = N_i / Σ N_i``.
    ``pixel_area``: area of one pixel in ``area_unit`` (0.09 ha for 30 m Landsat pixels).
    ``sampling``: the design that drew the reference sample, ``"stratified"`` (by map class; Olofsson Eq. 1-10) or
    ``"random"`` (simple random sample of the map; simple-random-sampling estimators). It only affects ``area_adjusted``.
    ``codes``/``names``: per-class code (default ``0..q-1``) and name (default ``str(code)``).

    Sample-level figures (top level and ``classes``) treat each row/column as a simple random sample: UA_i = n_ii/n_i.,
    PA_j = n_jj/n_.j, OA = Σ n_ii / n, with CI half-widths ``1.96 sqrt(p(1-p)/(m-1))`` (``m`` = n_i., n_.j or n; the
    ``m - 1`` denominator as in Olofsson Eq. 6). ``kappa`` is Cohen's kappa of the counts. These ignore the map's class
    proportions, so under stratified sampling they describe the sample, not the map: report ``area_adjusted``.

    ``area_adjusted`` (``None`` without ``mapped_pixels``) holds ``oa``, ``oa_ci95``, ``area_unit``, ``total_area`` and per
    class ``proportion`` (p̂_.k), ``area`` (p̂_.k × total area), adjusted ``users_accuracy``/``producers_accuracy`` and their
    ``_ci95``; see :func:`_stratified_estimates` and :func:`_random_estimates` for the equations.
    """
    counts = _check_counts(n)
    q = counts.shape[0]
    codes = list(range(q)) if codes is None else [int(c) for c in codes]
    names = [str(c) for c in codes] if names is None else [str(s) for s in names]
    if len(codes) != q or len(names) != q:
        raise ValueError(f"codes ({len(codes)}) and names ({len(names)}) must both have q = {q} entries")
    if len(set(codes)) != q:  # the per-class blocks are keyed by code: a repeated code would silently drop a class
        raise ValueError(f"codes must be distinct, got {codes}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, not {sampling!r}")
    mapped = None if mapped_pixels is None else _check_mapped(mapped_pixels, q)
    if not (math.isfinite(float(pixel_area)) and float(pixel_area) > 0):
        raise ValueError(f"pixel_area must be a positive number, not {pixel_area!r}")
    srs = _random_estimates(counts)
    result = {
        "oa": srs["oa"],
        "kappa": _kappa(counts),
        "error_matrix": counts.astype(np.int64).tolist(),
        "error_matrix_orientation": ORIENTATION,
        "sample_size": int(counts.sum()),
        "sampling": sampling,
        "classes": _sample_classes(counts, mapped, srs, codes, names),
        "area_adjusted": None,
    }
    if mapped is not None:
        est = _stratified_estimates(counts, mapped) if sampling == "stratified" else srs
        result["area_adjusted"] = _area_block(est, float(mapped.sum()) * float(pixel_area), str(area_unit), codes)
    return result


# --------------------------------------------------------------------------------------------------------- estimators


def _random_estimates(n: np.ndarray) -> dict:
    """Simple-random-sampling estimators from the ``(q, q)`` counts (each list has ``q`` entries, ``None`` = undefined).

    p̂_ij = n_ij / n; proportion p̂_.k = n_.k / n with V = p̂_.k(1 - p̂_.k)/(n - 1); UA_i = n_ii / n_i. with
    V = UA(1 - UA)/(n_i. - 1); PA_j = n_jj / n_.j with V = PA(1 - PA)/(n_.j - 1); OA = Σ n_jj / n with V = OA(1 - OA)/(n - 1).
    The UA/PA variances condition on the row/column total (the usual binomial approximation of the ratio estimator).
    """
    q = n.shape[0]
    total = float(n.sum())
    rows, cols, diag = n.sum(axis=1), n.sum(axis=0), np.diag(n)
    p = [_ratio(cols[k], total) for k in range(q)]
    ua = [_ratio(diag[i], rows[i]) for i in range(q)]
    pa = [_ratio(diag[j], cols[j]) for j in range(q)]
    oa = _ratio(diag.sum(), total)
    return {
        "p": p,
        "p_se": [_binom_se(v, total) for v in p],
        "ua": ua,
        "ua_se": [_binom_se(ua[i], rows[i]) for i in range(q)],
        "pa": pa,
        "pa_se": [_binom_se(pa[j], cols[j]) for j in range(q)],
        "oa": oa,
        "oa_se": _binom_se(oa, total),
    }


def _stratified_estimates(n: np.ndarray, mapped: np.ndarray) -> dict:
    """Stratified estimators (strata = map classes), Olofsson et al. 2014 Eq. 1-10; ``n`` is ``(q, q)``, ``mapped`` ``(q,)``.

    * Eq. 4: p̂_ij = W_i n_ij / n_i.   * Eq. 9: p̂_.k = Σ_i W_i n_ik / n_i.   * Eq. 1: Ô = Σ_j p̂_jj
    * Eq. 2: Û_i = p̂_ii / p̂_i. (= n_ii / n_i.)   * Eq. 3: P̂_j = p̂_jj / p̂_.j
    * Eq. 10: S(p̂_.k) = sqrt(Σ_i W_i² (n_ik/n_i.)(1 - n_ik/n_i.) / (n_i. - 1))
    * Eq. 5: V(Ô) = Σ_i W_i² Û_i (1 - Û_i) / (n_i. - 1)   * Eq. 6: V(Û_i) = Û_i (1 - Û_i) / (n_i. - 1)
    * Eq. 7: V(P̂_j), see :func:`_pa_se_eq7`.

    A stratum with ``N_i = 0`` contributes nothing. A stratum with ``N_i > 0`` and no sample leaves every estimate that
    sums over strata (proportions, areas, OA, PA) undefined; one with a single sample (``n_i. = 1``) leaves every variance
    that sums over strata (Eq. 5, 7, 10) undefined, since ``n_i. - 1 = 0``.
    """
    q = n.shape[0]
    ni = n.sum(axis=1)
    N = mapped.astype(float)
    W = N / N.sum()
    live = W > 0
    f = np.divide(n, ni[:, None], out=np.zeros_like(n), where=ni[:, None] > 0)  # n_ij / n_i.
    p = W[:, None] * f  # Eq. 4
    ua = [float(f[i, i]) if live[i] and ni[i] > 0 else None for i in range(q)]  # Eq. 2
    out = {
        "ua": ua,
        "ua_se": [_binom_se(ua[i], ni[i]) for i in range(q)],  # Eq. 6
        "p": [None] * q,
        "p_se": [None] * q,
        "pa": [None] * q,
        "pa_se": [None] * q,
        "oa": None,
        "oa_se": None,
    }
    if np.any(live & (ni == 0)):
        return out
    pk = p.sum(axis=0)  # Eq. 9
    out["p"] = [float(v) for v in pk]
    out["oa"] = float(np.trace(p))  # Eq. 1
    out["pa"] = [_ratio(p[j, j], pk[j]) for j in range(q)]  # Eq. 3
    if np.any(live & (ni < 2)):
        return out
    w2 = np.where(live, W**2, 0.0)
    dof = np.where(live, ni - 1.0, 1.0)  # strata with W_i = 0 have w2 = 0; 1.0 only avoids 0/0
    out["p_se"] = [float(np.sqrt(np.sum(w2 * f[:, k] * (1.0 - f[:, k]) / dof))) for k in range(q)]  # Eq. 10
    u = np.array([0.0 if v is None else v for v in ua])
    out["oa_se"] = float(np.sqrt(np.sum(w2 * u * (1.0 - u) / dof)))  # Eq. 5
    out["pa_se"] = [_pa_se_eq7(j, f, N, ni, ua[j], out["pa"][j], live) for j in range(q)]
    return out


def _pa_se_eq7(
    j: int, f: np.ndarray, N: np.ndarray, ni: np.ndarray, ua_j: float | None, pa_j: float | None, live: np.ndarray
) -> float | None:
    """Standard error of P̂_j by Olofsson et al. 2014 Eq. 7, exactly as printed (``f`` = n_ij/n_i. ``(q, q)``, ``N`` ``(q,)``).

    V(P̂_j) = 1/N̂_.j² [ N_j.² (1 - P̂_j)² Û_j (1 - Û_j) / (n_j. - 1)
                      + P̂_j² Σ_{i ≠ j} N_i.² (n_ij/n_i.)(1 - n_ij/n_i.) / (n_i. - 1) ],   N̂_.j = Σ_i N_i. n_ij / n_i.

    ``N_j.`` in the first term is the *mapped* pixel count of class ``j`` and the sum runs over ``i ≠ j``: this is the
    delta-method variance of the ratio p̂_jj / p̂_.j (Card 1982). Caller guarantees every live stratum has n_i. ≥ 2.
    """
    n_hat = float(np.sum(N * f[:, j]))
    if pa_j is None or n_hat <= 0:
        return None
    first = 0.0
    if live[j]:
        first = N[j] ** 2 * (1.0 - pa_j) ** 2 * ua_j * (1.0 - ua_j) / (ni[j] - 1.0)
    others = [i for i in range(len(N)) if i != j and live[i]]
    second = sum(N[i] ** 2 * f[i, j] * (1.0 - f[i, j]) / (ni[i] - 1.0) for i in others)
    return float(math.sqrt(first + pa_j**2 * second) / n_hat)


def _kappa(n: np.ndarray) -> float | None:
    """Cohen's kappa of the ``(q, q)`` counts: (p_o - p_e)/(1 - p_e), p_e = Σ_k n_k. n_.k / n²; ``None`` if p_e = 1 or n = 0."""
    total = float(n.sum())
    if total == 0:
        return None
    po = float(np.trace(n)) / total
    pe = float(np.sum(n.sum(axis=1) * n.sum(axis=0))) / total**2
    if math.isclose(pe, 1.0):
        return None
    return (po - pe) / (1.0 - pe)


# -------------------------------------------------------------------------------------------------------- assembling


def _sample_classes(n: np.ndarray, mapped: np.ndarray | None, srs: dict, codes: list[int], names: list[str]) -> dict:
    """Per-class sample-level figures keyed by ``str(code)``; ``srs`` is :func:`_random_estimates` of ``n`` ``(q, q)``."""
    rows, cols = n.sum(axis=1), n.sum(axis=0)
    out = {}
    for k, code in enumerate(codes):
        ua, pa = srs["ua"][k], srs["pa"][k]
        out[str(code)] = {
            "name": names[k],
            "users_accuracy": _num(ua),
            "users_accuracy_ci95": _ci(srs["ua_se"][k]),
            "producers_accuracy": _num(pa),
            "producers_accuracy_ci95": _ci(srs["pa_se"][k]),
            # Wilson score intervals [low, high]: valid at 0 % and 100 %, where the normal approximation gives ± 0
            "users_accuracy_wilson95": wilson(n[k, k], rows[k]),
            "producers_accuracy_wilson95": wilson(n[k, k], cols[k]),
            "f1": _f1(ua, pa),
            "map_pixels": int(rows[k] if mapped is None else mapped[k]),
            "reference_pixels": int(cols[k]),
        }
    return out


def _area_block(est: dict, total_area: float, area_unit: str, codes: list[int]) -> dict:
    """``area_adjusted`` from an estimator dict (lists of ``q``): areas = proportions × ``total_area`` (in ``area_unit``)."""
    classes = {}
    for k, code in enumerate(codes):
        p, se = est["p"][k], est["p_se"][k]
        classes[str(code)] = {
            "proportion": _num(p),
            "proportion_ci95": _ci(se),
            "area": None if p is None else _num(p * total_area),
            "area_ci95": None if se is None else _num(Z95 * se * total_area),
            "users_accuracy": _num(est["ua"][k]),
            "users_accuracy_ci95": _ci(est["ua_se"][k]),
            "producers_accuracy": _num(est["pa"][k]),
            "producers_accuracy_ci95": _ci(est["pa_se"][k]),
        }
    return {
        "oa": _num(est["oa"]),
        "oa_ci95": _ci(est["oa_se"]),
        "area_unit": area_unit,
        "total_area": _num(total_area),
        "classes": classes,
    }


def _check_counts(n: np.ndarray) -> np.ndarray:
    """``n`` as a float ``(q, q)`` array of finite, non-negative, integral counts (raises ``ValueError`` otherwise)."""
    a = np.asarray(n, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"the error matrix must be square (q, q) with q >= 1, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a != np.round(a)):
        raise ValueError("the error matrix must hold non-negative integer counts")
    return a


def _check_mapped(mapped_pixels: np.ndarray, q: int) -> np.ndarray:
    """``mapped_pixels`` as a float ``(q,)`` array of non-negative counts with a positive sum."""
    m = np.asarray(mapped_pixels, dtype=float).ravel()
    if m.shape != (q,):
        raise ValueError(f"mapped_pixels must have q = {q} entries, got {m.size}")
    if not np.all(np.isfinite(m)) or np.any(m < 0) or m.sum() <= 0:
        raise ValueError("mapped_pixels must be non-negative with a positive total")
    return m


def _ratio(a: float, b: float) -> float | None:
    """a / b as a float, ``None`` when b is 0."""
    return float(a) / float(b) if b > 0 else None


def _binom_se(p: float | None, m: float) -> float | None:
    """sqrt(p (1 - p) / (m - 1)), ``None`` when p is undefined or m < 2."""
    if p is None or m < 2:
        return None
    return math.sqrt(max(p * (1.0 - p), 0.0) / (float(m) - 1.0))


def wilson(successes: float, trials: float, z: float = Z95) -> list[float] | None:
    """Wilson's score interval ``[low, high]`` for a proportion (Wilson 1927): unlike ``p ± z se`` it does not
    collapse to a point at p = 0 or 1 (``[0, 0.52]`` for 0 of 3). ``None`` without trials."""
    if trials <= 0:
        return None
    p, n = float(successes) / float(trials), float(trials)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _ci(se: float | None) -> float | None:
    """95 % half-width 1.96 × se."""
    return None if se is None else _num(Z95 * se)


def _f1(ua: float | None, pa: float | None) -> float | None:
    """Harmonic mean of UA and PA; ``None`` if either is undefined, 0.0 if both are 0."""
    if ua is None or pa is None:
        return None
    return 0.0 if ua + pa == 0 else float(2.0 * ua * pa / (ua + pa))


def _num(x: float | None) -> float | None:
    """Plain python float, ``None`` for ``None``/NaN/inf (JSON-safe)."""
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


# ----------------------------------------------------------------------------------------------------------- reports


def report_markdown(result: dict) -> str:
    """Markdown report of an :func:`assess` result: error matrix, per-class table, OA/kappa, area-adjusted table."""
    cls = result["classes"]
    lines = [
        "## Accuracy assessment",
        "",
        f"Error matrix: {result['error_matrix_orientation']}.",
        "",
        f"Sample size: {result['sample_size']} · sampling design: {result['sampling']}",
        "",
        f"Overall accuracy (sample): {_fmt(result['oa'], 4)} · Cohen's kappa (sample): {_fmt(result['kappa'], 4)}",
        "",
        "| Code | Class | UA ± 95% CI | PA ± 95% CI | F1 | Map px | Ref px |",
        "|---|---|---|---|---|---|---|",
    ]
    for code, c in cls.items():
        lines.append(
            f"| {code} | {_md(c['name'])} | {accuracy_text(c, 'users_accuracy')} | "
            f"{accuracy_text(c, 'producers_accuracy')} | {_fmt(c['f1'], 3)} | "
            f"{c['map_pixels']:,} | {c['reference_pixels']:,} |"
        )
    lines += [
        "",
        "### Error matrix (sample counts; rows = map class, columns = reference class)",
        "",
        "| map \\ reference | " + " | ".join(cls) + " | total |",
        "|---" * (len(cls) + 2) + "|",
    ]
    for code, row in zip(cls, result["error_matrix"]):
        lines.append(f"| {code} | " + " | ".join(f"{v:,}" for v in row) + f" | {sum(row):,} |")
    adj = result["area_adjusted"]
    if adj is not None:
        lines += ["", *_markdown_area(adj, cls, result["sampling"])]
    return "\n".join(lines) + "\n"


def _markdown_area(adj: dict, cls: dict, sampling: str) -> list[str]:
    """Lines of the area-adjusted section of :func:`report_markdown`."""
    unit = adj["area_unit"]
    digits = 0 if (adj["total_area"] or 0) >= 1000 else 3
    lines = [
        f"### Area-adjusted estimates ({sampling} estimator, Olofsson et al. 2014)",
        "",
        f"Overall accuracy: {_pm(adj['oa'], adj['oa_ci95'], 4)} · total area: {_fmt(adj['total_area'], digits)} {unit}",
        "",
        f"| Code | Class | Proportion ± 95% CI | Area ({_md(unit)}) ± 95% CI | UA ± 95% CI | PA ± 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for code, a in adj["classes"].items():
        lines.append(
            f"| {code} | {_md(cls[code]['name'])} | {_pm(a['proportion'], a['proportion_ci95'], 4)} | "
            f"{_pm(a['area'], a['area_ci95'], digits)} | {_pm(a['users_accuracy'], a['users_accuracy_ci95'], 3)} | "
            f"{_pm(a['producers_accuracy'], a['producers_accuracy_ci95'], 3)} |"
        )
    return lines


CSV_COLUMNS = [
    "code",
    "name",
    "users_accuracy",
    "users_accuracy_ci95",
    "producers_accuracy",
    "producers_accuracy_ci95",
    "f1",
    "map_pixels",
    "reference_pixels",
]
CSV_AREA_COLUMNS = [
    "proportion",
    "proportion_ci95",
    "area",
    "area_ci95",
    "users_accuracy",
    "users_accuracy_ci95",
    "producers_accuracy",
    "producers_accuracy_ci95",
]


def report_csv(result: dict) -> str:
    """CSV of an :func:`assess` result: a per-class table (sample figures, then ``adj_*`` area-adjusted ones, empty when
    absent), a blank line, an overall table (metric, value, ci95), a blank line, and the error matrix (rows = map class,
    columns = reference class). Undefined values are empty cells; numbers are written at full precision."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    adj = result["area_adjusted"]
    w.writerow(CSV_COLUMNS + ["adj_" + c for c in CSV_AREA_COLUMNS])
    for code, c in result["classes"].items():
        a = adj["classes"][code] if adj is not None else {}
        w.writerow([code] + [_cell(c[k]) for k in CSV_COLUMNS[1:]] + [_cell(a.get(k)) for k in CSV_AREA_COLUMNS])
    w.writerow([])
    w.writerow(["metric", "value", "ci95"])
    w.writerow(["sample_oa", _cell(result["oa"]), ""])
    w.writerow(["sample_kappa", _cell(result["kappa"]), ""])
    w.writerow(["sample_size", result["sample_size"], ""])
    if adj is not None:
        w.writerow([f"adj_oa ({result['sampling']})", _cell(adj["oa"]), _cell(adj["oa_ci95"])])
        w.writerow([f"total_area ({adj['area_unit']})", _cell(adj["total_area"]), ""])
    w.writerow([])
    w.writerow(["error_matrix: " + result["error_matrix_orientation"]])
    w.writerow(["map \\ reference"] + list(result["classes"]))
    for code, row in zip(result["classes"], result["error_matrix"]):
        w.writerow([code] + list(row))
    return buf.getvalue()


def _fmt(v: float | None, digits: int) -> str:
    """``v`` with ``digits`` decimals and thousands separators, an en dash when undefined."""
    return "–" if v is None else f"{v:,.{digits}f}"


def _pm(v: float | None, ci: float | None, digits: int) -> str:
    """``value ± ci`` (``value ± –`` when only the interval is undefined)."""
    return "–" if v is None else f"{_fmt(v, digits)} ± {_fmt(ci, digits)}"


def _md(text: str) -> str:
    """Escape the Markdown table separator."""
    return str(text).replace("|", "\\|")


def _cell(v: object) -> object:
    """CSV cell: empty for ``None``."""
    return "" if v is None else v


def accuracy_text(c: dict, key: str) -> str:
    """A sample UA or PA with its interval: ``± half-width``, or Wilson's ``[low, high]`` at 0 % and 100 % (where the
    normal approximation would print ± 0.000)."""
    p, w = c.get(key), c.get(f"{key}_wilson95")
    if p is not None and w is not None and (p == 0.0 or p == 1.0):
        return f"{_fmt(p, 3)} [{_fmt(w[0], 3)}, {_fmt(w[1], 3)}] (Wilson)"
    return _pm(p, c.get(f"{key}_ci95"), 3)
