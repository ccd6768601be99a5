"""Confidence calibration: temperature scaling, expected calibration error, reliability diagram.

Temperature scaling (Guo, Pleiss, Sun & Weinberger 2017, "On calibration of modern neural networks"):
one scalar ``T > 0`` divides every logit, ``p = softmax(z / T)``; the class (the argmax) does not change.
``T`` is fitted after training on the validation split by minimising its negative log-likelihood
``NLL(T) = -1/N Σ_n log softmax(z_n / T)_{y_n}`` over ``log T`` (so ``T`` stays positive) with
``torch.optim.LBFGS``. It is kept in the bundle (``Bundle.temperature``) and used by ``predict-map``
(``--confidence``, ``--probabilities``, ``--reject-below``) and ``evaluate``.

A fitted ``T < 1`` sharpens the probabilities. It is kept only where the validation supports it
(:func:`guarded_temperature`): not when the validation accuracy is at least :data:`SATURATED` (too
few errors to measure how confident the errors are), and not when ``T`` fitted on one half of the
validation regions and scored on the other (both ways, pooled) gives a worse NLL than ``T = 1``. Then
``T = 1`` is kept and the reason recorded. Under a spatial shift a sharper model is the wrong way.

Expected calibration error with ``M = 15`` equal-width confidence bins ``B_m = ((m-1)/M, m/M]``
(Guo et al. 2017, Eq. 3; Naeini et al. 2015): ``ECE = Σ_m |B_m| / N · |acc(B_m) - conf(B_m)|``, where
``conf`` is the maximum probability of a pixel and ``acc`` the share of its bin that is classified
correctly. A reliability diagram plots ``acc(B_m)`` against ``conf(B_m)``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ECE_BINS = 15
LOG_T_RANGE = (math.log(1e-2), math.log(1e2))  # T is kept within [0.01, 100]
SATURATED = 0.99  # validation accuracy at or above which no sharpening (T < 1) is trusted


def nll(logits: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / T)`` ``(N, K)`` at the true classes ``y`` ``(N,)``."""
    return float(F.cross_entropy(logits.double() / float(temperature), y.long()))


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The ``T`` minimising the NLL of ``softmax(logits / T)`` (``logits`` ``(N, K)``, ``y`` ``(N,)`` 0-based).

    LBFGS (strong-Wolfe line search) on ``log T`` from ``T = 1``; NLL is convex in ``1/T``, so this is its minimum,
    clipped to [0.01, 100] (a validation split classified perfectly with wide margins would drive T to 0). Returns
    1.0 when nothing better is found."""
    z, y = logits.detach().cpu().double().clone(), y.detach().cpu().long().clone()  # normal tensors, also from inference mode
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z * torch.exp(-log_t), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = math.exp(min(max(float(log_t.detach()), LOG_T_RANGE[0]), LOG_T_RANGE[1]))
    if not math.isfinite(t) or nll(z, y, t) > nll(z, y, 1.0):
        return 1.0
    return t


def validation_halves(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int], block: int = 8) -> np.ndarray:
    """``(N,)`` 0/1: two halves of the validation pixels ``(rows, cols)`` on a grid of ``shape``, by place:
    whole 8-connected validation regions, dealt largest first to the smaller half; with one region,
    a checkerboard of ``block``-px squares."""
    from scipy import ndimage

    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    regions, m = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if m < 2:
        return ((rows // block + cols // block) % 2).astype(np.int64)
    sizes = np.bincount(regions.ravel(), minlength=m + 1)
    half, load = np.zeros(m + 1, np.int64), [0, 0]
    for r in sorted(range(1, m + 1), key=lambda r: -sizes[r]):
        h = int(load[1] < load[0])
        half[r], load[h] = h, load[h] + int(sizes[r])
    return half[regions[rows, cols]]


def guarded_temperature(logits: torch.Tensor, y: torch.Tensor, halves: np.ndarray | None = None) -> tuple[float, str | None]:
    """``(T, why T = 1 was kept instead of the fitted T, or None)``: :func:`fit_temperature`, with a sharpening
    ``T < 1`` refused when the validation accuracy is at least :data:`SATURATED`, or when, fitted on one half of
    the validation (``halves`` ``(N,)`` 0/1, :func:`validation_halves`) and scored on the other, both ways, ``T``
    raises the pooled held-back NLL above that of ``T = 1``."""
    t = fit_temperature(logits, y)
    if t >= 1.0:
        return t, None
    acc = float((logits.argmax(1) == y).double().mean())
    if acc >= SATURATED:
        return 1.0, (
            f"validation accuracy {acc:.3f} >= {SATURATED}: too few errors to support sharpening the probabilities "
            f"(fitted T = {t:.3f}); T = 1 kept"
        )
    if halves is not None:
        h = torch.as_tensor(np.asarray(halves))
        gain, fits = 0.0, []
        for a in (0, 1):  # two-fold cross-validation of "fit T" against "T = 1", by place
            fit, check = h == a, h != a
            if fit.sum() < 2 or check.sum() < 2:
                continue
            ta = fit_temperature(logits[fit], y[fit])
            fits.append(ta)
            gain += (nll(logits[check], y[check], 1.0) - nll(logits[check], y[check], ta)) * int(check.sum())
        if fits and gain < 0:
            return 1.0, (
                f"temperatures fitted on one half of the validation regions ({', '.join(f'{v:.3f}' for v in fits)}) made "
                f"the other half's NLL worse than T = 1 (fitted on all: T = {t:.3f}); T = 1 kept"
            )
    return t, None


def probabilities(logits: torch.Tensor, temperature: float | None) -> torch.Tensor:
    """``softmax(logits / T)`` ``(N, K)``; ``T = None`` (not calibrated) means 1."""
    return torch.softmax(logits.double() / (1.0 if temperature is None else float(temperature)), dim=1)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> tuple[float, list[dict]]:
    """``(ECE, per-bin records)`` of probabilities ``(N, K)`` against true classes ``(N,)`` (0-based).

    Bin ``m`` (1-based) holds the pixels whose maximum probability lies in ((m-1)/M, m/M]; each record has
    ``lower``, ``upper``, ``count``, mean ``confidence`` and ``accuracy`` (``None`` for an empty bin)."""
    probs = np.asarray(probs, np.float64)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y)
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct.astype(np.float64), minlength=bins)
    records, ece, n = [], 0.0, max(int(conf.size), 1)
    for m in range(bins):
        c = int(count[m])
        mean_conf = float(conf_sum[m] / c) if c else None
        acc = float(acc_sum[m] / c) if c else None
        if c:
            ece += c / n * abs(acc - mean_conf)
        records.append({"lower": m / bins, "upper": (m + 1) / bins, "count": c, "confidence": mean_conf, "accuracy": acc})
    return float(ece), records


def calibration_report(logits: torch.Tensor, y: torch.Tensor, temperature: float | None, bins: int = ECE_BINS) -> dict:
    """ECE and NLL of ``logits`` ``(N, K)`` before (T = 1) and after temperature scaling, with both reliability tables."""
    y_np = y.cpu().numpy()
    ece_before, rel_before = reliability(probabilities(logits, None).cpu().numpy(), y_np, bins)
    out = {
        "temperature": temperature,
        "bins": bins,
        "pixels": int(y.numel()),
        "ece_before": ece_before,
        "nll_before": nll(logits, y),
        "reliability_before": rel_before,
        "ece_after": None,
        "nll_after": None,
        "reliability_after": None,
    }
    if temperature is not None:
        out["ece_after"], out["reliability_after"] = reliability(probabilities(logits, temperature).cpu().numpy(), y_np, bins)
        out["nll_after"] = nll(logits, y, temperature)
    return out


def split_logits(bundle, prep, mask: np.ndarray, runner) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, K)`` float32 (CPU) and 0-based true classes ``(N,)`` of the pixels of ``mask`` ``(H, W)`` of a
    prepared scene, from the bundle's network (its patch size and padding)."""
    model = bundle.build_model().to(runner.device)
    patch = bundle.model.patch_size
    padded = prep.padded(patch, bundle.model.padding).to(runner.device)  # every scene padded on its own
    rows, cols = np.nonzero(mask)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.long, device=runner.device)
    logits = runner.all_logits(model, padded, as_t(prep.padded_rows(rows, patch)), as_t(cols), patch).cpu()
    return logits, torch.as_tensor(prep.labels[rows, cols] - 1, dtype=torch.long)


def calibrate_bundle(bundle, prep, device: str = "auto", precision: str = "auto", log=None) -> None:
    """Fit the bundle's temperature on the validation split of ``prep``: sets ``bundle.temperature`` and
    ``bundle.training["calibration"]`` (temperature, validation NLL and ECE before and after; or why it was
    skipped). Without validation pixels the bundle stays uncalibrated (``temperature = None``)."""
    from hsicls.engine.inference import Runner

    if not prep.val.any():
        bundle.temperature = None
        bundle.training["calibration"] = {"skipped": "no validation split (--val-ratio 0): confidences are not calibrated"}
        if log:
            log("calibration skipped: no validation split")
        return
    runner = Runner.resolve(device, precision)
    logits, y = split_logits(bundle, prep, prep.val, runner)  # Runner.logits runs under no_grad
    rows, cols = np.nonzero(prep.val)
    t, kept_one = guarded_temperature(logits, y, validation_halves(rows, cols, prep.val.shape))
    rep = calibration_report(logits, y, t)
    bundle.temperature = t
    bundle.training["calibration"] = {
        "temperature": t,
        "method": "temperature scaling (one scalar, LBFGS on log T, validation NLL); sharpening (T < 1) only where "
        "the validation supports it",
        "kept_t1": kept_one,
        "val_pixels": rep["pixels"],
        "val_nll_before": rep["nll_before"],
        "val_nll_after": rep["nll_after"],
        "val_ece_before": rep["ece_before"],
        "val_ece_after": rep["ece_after"],
        "ece_bins": rep["bins"],
    }
    if log:
        log(
            f"calibration: temperature {t:.3f} on {rep['pixels']} validation px "
            f"(NLL {rep['nll_before']:.4f} -> {rep['nll_after']:.4f}, ECE {rep['ece_before']:.4f} -> {rep['ece_after']:.4f})"
        )
        if kept_one:
            log(f"calibration: {kept_one}")


def measure_bf16_error(bundle, prep, log=None, max_pixels: int = 4096) -> None:
    """Record in ``bundle.training["bf16_error"]`` the largest relative error of a bf16 copy of the
    network's logits on (up to ``max_pixels`` of) the validation pixels, or the training pixels
    without a validation split: what lets ``--precision auto`` run bf16 on the CPU and recompute in
    fp32 exactly the pixels whose class bf16 could change (:class:`hsicls.engine.inference.Runner`)."""
    from hsicls.engine.inference import bf16_error

    mask = prep.val if prep.val.any() else prep.train
    rows, cols = np.nonzero(mask)
    if rows.size > max_pixels:
        pick = np.sort(np.random.default_rng(0).choice(rows.size, max_pixels, replace=False))
        rows, cols = rows[pick], cols[pick]
    patch = bundle.model.patch_size
    padded = prep.padded(patch, bundle.model.padding)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.long)
    err = bf16_error(bundle.build_model(), padded, as_t(prep.padded_rows(rows, patch)), as_t(cols), patch)
    bundle.training["bf16_error"] = err
    if log:
        log(f"bf16 check: largest relative logit error {err:.2e} on {rows.size} px (kept for --precision auto)")


def plot_reliability(calibration: dict, path: Path, overwrite: bool, title: str = "") -> None:
    """Reliability diagram (accuracy against confidence per bin, before and after temperature scaling) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hsicls.io.atomic import atomic_output

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    curves = [("reliability_before", "ece_before", "T = 1", "tab:red")]
    if calibration.get("reliability_after") is not None:
        curves.append(("reliability_after", "ece_after", f"T = {calibration['temperature']:.3g}", "tab:blue"))
    for key, ece_key, label, colour in curves:
        pts = [(b["confidence"], b["accuracy"]) for b in calibration[key] if b["count"]]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", color=colour, label=f"{label} (ECE {calibration[ece_key]:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"confidence (mean per bin, {calibration['bins']} bins)")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "reliability diagram", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
