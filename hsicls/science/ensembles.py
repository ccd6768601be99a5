"""Choosing an ensemble on validation data only: member weights, the prior adjustment, and the rule of ``--model auto``.

Inputs are each member's calibrated class probabilities on the validation pixels, ``P_m`` ``(N, K)``, the true
classes ``y`` ``(N,)`` (0-based), the training prior ``pi`` ``(K,)`` and a region id per pixel (the validation
regions, for cross-fitting). The combination is that of :class:`hsicls.models.ensemble.Ensemble`::

    score = log(sum_m w_m P_m) - tau log pi      (the class is its argmax)

* **weights** :func:`fit_weights`: the point of a simplex grid (step 0.1) with the best validation log-likelihood
  of ``sum_m w_m P_m`` (smooth, and less noisy than OA on a few thousand pixels);
* **prior adjustment** :func:`fit_tau`: ``tau`` in 0, 0.25, ..., 1 with the best mean of validation OA and AA
  (``tau`` > 0 trades a little OA for the rare classes' recall), ties to the smaller ``tau``.

Rules (:data:`RULES`), each a function of validation data alone:

* ``ensemble`` (the default): the plain average, equal weights and no prior adjustment, so nothing is fitted to the
  validation pixels that also chose each member's epoch and temperature;
* ``ensemble-unless``: the same, unless a member is clearly better on validation (higher OA and a paired McNemar test
  with p < 0.05), which then stands alone;
* ``ensemble-prior``: the plain average with ``tau`` chosen on validation (rare classes' recall, i.e. AA, against OA);
* ``best-validation``: every member alone and the weighted ensemble (weights and ``tau`` on validation); the best
  validation OA wins;
* ``cross-fit``: weights and ``tau`` fitted on each half of the validation regions and scored on the other half; the
  averaged weights and ``tau`` are kept (the halves' scores are honest estimates, recorded).

Measured on whole held-out EnMAP tiles and Indian Pines (``bench/holdout.py``, ``bench/RESULTS.md``): every choice
fitted on the validation pixels (weights, ``tau``, a member alone) lost test OA to the plain average, which is why it
is the default.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from hsicls.science.metrics import classification_report

RULES = ("ensemble", "ensemble-unless", "ensemble-prior", "best-validation", "cross-fit")
TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)
WEIGHT_STEP = 0.1
FLOOR = 1e-12


def combine(probs: list[np.ndarray], weights, tau: float, prior: np.ndarray) -> np.ndarray:
    """``log(sum_m w_m P_m) - tau log pi`` ``(N, K)``; ``weights`` are normalised to sum 1."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    p = sum(wi * np.asarray(q, np.float64) for wi, q in zip(w, probs))
    return np.log(np.maximum(p, FLOOR)) - tau * np.log(np.maximum(np.asarray(prior, np.float64), FLOOR))


def scores(score: np.ndarray, y: np.ndarray, k: int) -> dict:
    """OA, AA, kappa of the argmax of ``score`` ``(N, K)``."""
    rep = classification_report(np.asarray(y), score.argmax(1), k)
    return {"oa": rep["oa"], "aa": rep["aa"], "kappa": rep["kappa"]}


def simplex(m: int, step: float = WEIGHT_STEP) -> list[tuple[float, ...]]:
    """Every weight vector of ``m`` members on a grid of ``step`` summing to 1."""
    n = round(1 / step)
    return [tuple(c / n for c in combo) for combo in itertools.product(range(n + 1), repeat=m) if sum(combo) == n]


def fit_weights(probs: list[np.ndarray], y: np.ndarray) -> tuple[float, ...]:
    """The grid weights with the best mean log-likelihood of the true class (ties: the first, i.e. more weight on the
    later members; equal weights win among equals by being checked first)."""
    y = np.asarray(y)
    p_true = np.stack([np.asarray(q, np.float64)[np.arange(len(y)), y] for q in probs], 1)  # (N, M)
    m = len(probs)
    grid = [tuple([1.0 / m] * m)] + simplex(m)
    ll = [float(np.log(np.maximum(p_true @ np.asarray(w), FLOOR)).mean()) for w in grid]
    return grid[int(np.argmax(ll))]


def fit_tau(probs: list[np.ndarray], weights, y: np.ndarray, prior: np.ndarray, k: int) -> float:
    """The ``tau`` of :data:`TAUS` with the best mean of validation OA and AA (ties: the smaller ``tau``)."""
    best, best_tau = -1.0, 0.0
    for tau in TAUS:
        s = scores(combine(probs, weights, tau, prior), y, k)
        v = (s["oa"] + s["aa"]) / 2
        if v > best + 1e-12:
            best, best_tau = v, tau
    return best_tau


def mcnemar_p(a_correct: np.ndarray, b_correct: np.ndarray) -> float:
    """Two-sided exact McNemar test (binomial on the discordant pairs) that A and B err alike on the same pixels."""
    from scipy.stats import binomtest

    n01 = int((a_correct & ~b_correct).sum())
    n10 = int((~a_correct & b_correct).sum())
    if n01 + n10 == 0:
        return 1.0
    return float(binomtest(n01, n01 + n10, 0.5).pvalue)


@dataclass
class Choice:
    """What a rule chose: member weights (one-hot for a single member), ``tau``, the winner's name, the table."""

    rule: str
    weights: list[float]
    tau: float
    chosen: str
    table: list[dict] = field(default_factory=list)
    note: str = ""

    def record(self) -> dict:
        return {"rule": self.rule, "weights": self.weights, "tau": self.tau, "chosen": self.chosen, "note": self.note,
                "validation": self.table}  # fmt: skip


def _table(names, probs, y, prior, k, ens_w, ens_tau) -> tuple[list[dict], np.ndarray]:
    rows = []
    for i, n in enumerate(names):
        one = [1.0 if j == i else 0.0 for j in range(len(names))]
        rows.append({"candidate": n, "weights": one, "tau": 0.0, **scores(combine(probs, one, 0.0, prior), y, k)})
    ens = combine(probs, ens_w, ens_tau, prior)
    rows.append({"candidate": "ensemble", "weights": [float(w) for w in ens_w], "tau": ens_tau, **scores(ens, y, k)})
    return rows, ens


def choose(
    rule: str, names: list[str], probs: list[np.ndarray], y: np.ndarray, prior: np.ndarray, regions: np.ndarray, k: int
) -> Choice:
    """Apply ``rule`` to the members' validation probabilities (see the module docstring)."""
    y = np.asarray(y)
    m = len(names)
    if rule == "best-validation":
        w = fit_weights(probs, y)
        tau = fit_tau(probs, w, y, prior, k)
        table, _ = _table(names, probs, y, prior, k, w, tau)
        best = max(table, key=lambda r: (r["oa"], r["candidate"] == "ensemble"))
        return Choice(rule, [float(v) for v in best["weights"]], best["tau"], best["candidate"], table)
    if rule in ("ensemble", "ensemble-unless", "ensemble-prior"):
        w = tuple([1.0 / m] * m)
        tau = fit_tau(probs, w, y, prior, k) if rule == "ensemble-prior" else 0.0
        table, ens = _table(names, probs, y, prior, k, w, tau)
        if rule != "ensemble-unless":
            return Choice(rule, [float(v) for v in w], tau, "ensemble", table, "the plain average of the members")
        ens_ok = ens.argmax(1) == y
        best = max(table[:-1], key=lambda r: r["oa"])
        i = names.index(best["candidate"])
        p = mcnemar_p(probs[i].argmax(1) == y, ens_ok)
        if best["oa"] > table[-1]["oa"] and p < 0.05:
            note = f"{best['candidate']} is clearly better on validation (OA {best['oa']:.4f} vs {table[-1]['oa']:.4f}, McNemar p = {p:.3g})"
            return Choice(rule, [float(v) for v in best["weights"]], 0.0, best["candidate"], table, note)
        note = f"no member clearly better than the equal-weight ensemble (best {best['candidate']}, McNemar p = {p:.3g})"
        return Choice(rule, [float(v) for v in w], tau, "ensemble", table, note)
    if rule == "cross-fit":
        halves = _halves(regions)
        if halves is None:  # one validation region: nothing to cross-fit on
            out = choose("ensemble", names, probs, y, prior, regions, k)
            out.rule, out.note = rule, "one validation region: the ensemble rule instead"
            return out
        ws, taus, honest = [], [], []
        for a, b in (halves, halves[::-1]):
            pa, pb = [q[a] for q in probs], [q[b] for q in probs]
            w = fit_weights(pa, y[a])
            t = fit_tau(pa, w, y[a], prior, k)
            ws.append(np.asarray(w))
            taus.append(t)
            honest.append(scores(combine(pb, w, t, prior), y[b], k))
        w = tuple(float(v) for v in np.mean(ws, 0))
        tau = float(np.mean(taus))
        table, _ = _table(names, probs, y, prior, k, w, tau)
        table[-1]["cross_fitted"] = {key: float(np.mean([h[key] for h in honest])) for key in ("oa", "aa", "kappa")}
        return Choice(
            rule, list(w), tau, "ensemble", table, "weights and tau averaged over the two halves of the validation regions"
        )
    raise ValueError(f"unknown ensemble rule {rule!r} (choose among {', '.join(RULES)})")


def _halves(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Two boolean masks splitting the validation pixels by region (alternate regions by size), or None for one region."""
    ids, counts = np.unique(regions, return_counts=True)
    if len(ids) < 2:
        return None
    order = ids[np.argsort(-counts, kind="stable")]
    first = np.isin(regions, order[0::2])
    return first, ~first


def prior_of(y_train: np.ndarray, k: int) -> np.ndarray:
    """Training class frequencies ``(K,)`` (a class without training pixels gets a tiny share, never 0)."""
    counts = np.bincount(np.asarray(y_train), minlength=k).astype(np.float64)
    counts = np.maximum(counts, 0.5)
    return counts / counts.sum()


def describe(choice: Choice) -> str:
    w = ", ".join(f"{r['candidate']} {v:.2f}" for r, v in zip(choice.table, choice.weights) if v > 0)
    tau = f", prior adjustment tau {choice.tau:g}" if choice.tau and not math.isclose(choice.tau, 0) else ""
    return f"{choice.chosen} ({w}{tau}; rule {choice.rule})"
