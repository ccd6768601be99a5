"""Spectral-only baselines: RBF SVM and random forest on the centre pixel's (PCA) spectrum.

They are fitted with scikit-learn, then stored as plain tensors and evaluated by small torch
modules, so that they go through the same model bundle (``torch.load(weights_only=True)``, no
pickled estimators), ``evaluate`` and ``predict-map`` as the deep models. Both take patches
``(B, bands, P, P)`` and look only at the centre pixel ``(B, bands)``, and both return
**log-probabilities** ``(B, classes)``: ``softmax`` (what evaluate and predict-map apply to every
model's output) gives back the class probabilities exactly, so confidences are real probabilities
and temperature scaling (:mod:`hsicls.engine.calibration`) treats them like any model's logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .registry import register_model

PROB_FLOOR = 1e-12  # log(0) would be -inf: a floor far below float32's resolution near 1 keeps softmax(log p) = p


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x[:, :, x.shape[2] // 2, x.shape[3] // 2]


def _log_probs(p: torch.Tensor) -> torch.Tensor:
    """``log(max(p, PROB_FLOOR))`` ``(B, classes)``: monotone, so the argmax (the class) is that of ``p``."""
    return torch.log(p.clamp_min(PROB_FLOOR))


class RBFSVM(nn.Module):
    """libsvm's one-vs-one RBF SVM decision, reproduced from scikit-learn's fitted arrays.

    For classes i < j (pair p): dec_p(x) = sum_{s in SV_i} a[j-1, s] K(s, x) + sum_{s in SV_j} a[i, s] K(s, x)
    + b_p, with K(s, x) = exp(-gamma ||s - x||^2); a positive decision votes for i, else j.

    With ``probability`` (every bundle trained since calibration exists), the output is the
    log of class probabilities ``(B, classes)``: Platt's sigmoid per pair,
    r_ij = P(i | i or j, x) = 1 / (1 + exp(A_p dec_p + B_p)) (A_p, B_p fitted on held-out decisions,
    :func:`fit_platt`), coupled into one distribution by Wu, Lin & Weng (2004), method 2
    (:func:`couple_pairwise`), as libsvm's ``-b 1``; the class is the most probable one, as libsvm's
    probability prediction. Without it (bundles from before), the output is the votes per class
    (plus a tiny margin term to break ties as libsvm does, towards the lower class index).
    """

    def __init__(
        self,
        in_bands: int,
        n_classes: int,
        patch_size: int = 1,
        n_sv: int = 1,
        gamma: float = 1.0,
        probability: bool = False,
        **_: Any,
    ):
        super().__init__()
        self.n_classes = n_classes
        self.gamma = float(gamma)
        self.probabilistic = bool(probability)
        n_pairs = n_classes * (n_classes - 1) // 2
        self.register_buffer("support_vectors", torch.zeros(int(n_sv), in_bands))
        self.register_buffer("dual_coef", torch.zeros(max(n_classes - 1, 1), int(n_sv), dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(n_pairs, dtype=torch.float64))
        self.register_buffer("n_support", torch.zeros(n_classes, dtype=torch.long))
        if self.probabilistic:
            self.register_buffer("platt_a", torch.full((n_pairs,), -1.0, dtype=torch.float64))
            self.register_buffer("platt_b", torch.zeros(n_pairs, dtype=torch.float64))

    def decisions(self, x: torch.Tensor) -> torch.Tensor:
        """Pairwise decision values ``(B, pairs)`` float64, pairs (0, 1), (0, 2), ..., (K-2, K-1)."""
        c = _centre(x).double()
        sv = self.support_vectors.double()
        k = torch.exp(-self.gamma * torch.cdist(c, sv).pow(2))  # (B, n_sv)
        starts = torch.cumsum(self.n_support, 0) - self.n_support
        out = []
        for i in range(self.n_classes):
            si = slice(int(starts[i]), int(starts[i] + self.n_support[i]))
            for j in range(i + 1, self.n_classes):
                sj = slice(int(starts[j]), int(starts[j] + self.n_support[j]))
                out.append(k[:, si] @ self.dual_coef[j - 1, si] + k[:, sj] @ self.dual_coef[i, sj] + self.intercept[len(out)])
        return torch.stack(out, 1) if out else torch.zeros(c.shape[0], 0, dtype=torch.float64, device=x.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dec = self.decisions(x)
        if self.probabilistic:
            r = pairwise_matrix(1.0 / (1.0 + torch.exp(dec * self.platt_a + self.platt_b)), self.n_classes)
            return _log_probs(couple_pairwise(r)).float()
        votes = torch.zeros(dec.shape[0], self.n_classes, dtype=torch.float64, device=x.device)
        for p, (i, j) in enumerate(_pairs(self.n_classes)):
            win = dec[:, p] > 0
            votes[:, i] += win
            votes[:, j] += ~win
        tie_break = -1e-6 * torch.arange(self.n_classes, device=x.device, dtype=torch.float64)
        return (votes + tie_break).float()


def _pairs(k: int) -> list[tuple[int, int]]:
    """libsvm's pair order: (0, 1), (0, 2), ..., (0, K-1), (1, 2), ..., (K-2, K-1)."""
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


MIN_PAIR_PROB = 1e-7  # libsvm clips r_ij to [1e-7, 1 - 1e-7]


def pairwise_matrix(r_pairs: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, pairs)`` probabilities r_ij = P(i | i or j) for i < j -> ``(B, K, K)`` with r_ji = 1 - r_ij, r_ii = 0."""
    r_pairs = r_pairs.clamp(MIN_PAIR_PROB, 1.0 - MIN_PAIR_PROB)
    r = torch.zeros(r_pairs.shape[0], k, k, dtype=r_pairs.dtype, device=r_pairs.device)
    for p, (i, j) in enumerate(_pairs(k)):
        r[:, i, j] = r_pairs[:, p]
        r[:, j, i] = 1.0 - r_pairs[:, p]
    return r


def couple_pairwise(r: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(B, K)`` from pairwise ones ``r`` ``(B, K, K)``: Wu, Lin & Weng (2004), method 2.

    p = argmin_p Σ_t Σ_{j≠t} (r_jt p_t - r_tj p_j)² subject to Σ_t p_t = 1, i.e. p^T Q p with
    Q_tt = Σ_{j≠t} r_jt², Q_tj = -r_jt r_tj. libsvm iterates towards this minimum (tolerance 0.005/K);
    here it is solved exactly from its optimality conditions, the linear system
    [[Q, 1], [1^T, 0]] [p; b] = [0; 1] (Q is positive semi-definite and the system is regular for
    0 < r < 1; the solution is non-negative, Wu et al. Theorem 3; clipped at 0 against rounding).
    """
    b, k, _ = r.shape
    q = torch.diag_embed((r**2).sum(dim=1)) - r.transpose(1, 2) * r  # (B, K, K)
    a = torch.zeros(b, k + 1, k + 1, dtype=r.dtype, device=r.device)
    a[:, :k, :k] = q
    a[:, :k, k] = 1.0
    a[:, k, :k] = 1.0
    rhs = torch.zeros(b, k + 1, 1, dtype=r.dtype, device=r.device)
    rhs[:, k] = 1.0
    p = torch.linalg.solve(a, rhs)[:, :k, 0].clamp_min(0.0)
    return p / p.sum(dim=1, keepdim=True)


def fit_platt(dec: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """Platt's sigmoid P(positive | dec) = 1 / (1 + exp(A dec + B)), fitted by maximum likelihood with Platt's
    smoothed targets t+ = (N+ + 1) / (N+ + 2), t- = 1 / (N- + 2) (Platt 1999; Lin, Lin & Weng 2007). ``dec`` ``(n,)``
    held-out decision values, ``positive`` ``(n,)`` bool. The objective is convex in (A, B)."""
    from scipy.optimize import minimize

    dec = np.asarray(dec, np.float64)
    pos = np.asarray(positive, bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    t = np.where(pos, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        f = ab[0] * dec + ab[1]
        nll = np.sum(t * np.logaddexp(0.0, f) + (1.0 - t) * np.logaddexp(0.0, -f))  # -log-likelihood
        g = 1.0 / (1.0 + np.exp(-f)) - (1.0 - t)  # d nll / d f
        return float(nll), np.array([np.sum(g * dec), np.sum(g)])

    start = np.array([0.0, np.log((n_neg + 1.0) / (n_pos + 1.0))])
    res = minimize(loss, start, jac=True, method="BFGS")
    return float(res.x[0]), float(res.x[1])


def _held_out_decisions(x: np.ndarray, pos: np.ndarray, c: float, g: float, seed: int, folds: int = 5) -> np.ndarray:
    """Decision values ``(n,)`` of a binary RBF SVM (positive = ``pos``) for each sample, from the fold that
    held it out (libsvm's ``svm_binary_svc_probability``: 5 folds; a fold trained on one class only gives ±1)."""
    from sklearn.model_selection import KFold
    from sklearn.svm import SVC

    dec = np.zeros(len(pos))
    for tr, te in KFold(min(folds, len(pos)), shuffle=True, random_state=seed).split(x):
        if pos[tr].all() or not pos[tr].any():
            dec[te] = 1.0 if pos[tr].all() else -1.0
            continue
        dec[te] = SVC(C=c, gamma=g, kernel="rbf").fit(x[tr], pos[tr]).decision_function(x[te])  # > 0: positive
    return dec


def fit_pairwise_platt(x_tr: np.ndarray, y_tr: np.ndarray, k: int, c: float, g: float, seed: int) -> np.ndarray:
    """``(2, pairs)`` Platt parameters (A, B) of every class pair (i < j, positive = i), each fitted on 5-fold
    held-out decisions of the pair's training pixels, as libsvm does for ``-b 1``; the validation split stays
    free for temperature scaling."""
    out = np.zeros((2, k * (k - 1) // 2))
    for p, (i, j) in enumerate(_pairs(k)):
        sel = (y_tr == i) | (y_tr == j)
        pos = y_tr[sel] == i
        out[:, p] = fit_platt(_held_out_decisions(x_tr[sel], pos, c, g, seed), pos)
    return out


class RandomForest(nn.Module):
    """A fitted scikit-learn forest as padded node tables ``(trees, nodes)``; output: the log of the class
    probabilities averaged over trees ``(B, classes)`` (``softmax`` of it = ``predict_proba``)."""

    def __init__(
        self, in_bands: int, n_classes: int, patch_size: int = 1, n_trees: int = 1, n_nodes: int = 1, depth: int = 1, **_: Any
    ):
        super().__init__()
        self.depth = int(depth)
        t, n = int(n_trees), int(n_nodes)
        self.register_buffer("left", torch.full((t, n), -1, dtype=torch.long))
        self.register_buffer("right", torch.full((t, n), -1, dtype=torch.long))
        self.register_buffer("feature", torch.zeros(t, n, dtype=torch.long))
        self.register_buffer("threshold", torch.zeros(t, n))
        self.register_buffer("value", torch.zeros(t, n, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = _centre(x).float()  # (B, F)
        b, t = c.shape[0], self.left.shape[0]
        node = torch.zeros(b, t, dtype=torch.long, device=x.device)
        tree = torch.arange(t, device=x.device)[None, :].expand(b, t)
        for _ in range(self.depth):
            f = self.feature[tree, node]  # (B, T)
            go_left = torch.gather(c, 1, f) <= self.threshold[tree, node]
            nxt = torch.where(go_left, self.left[tree, node], self.right[tree, node])
            node = torch.where(nxt >= 0, nxt, node)  # leaves stay put
        return _log_probs(self.value[tree, node].mean(dim=1))


def fit_svm(x_tr, y_tr, x_val, y_val, n_classes: int, seed: int, log=print) -> tuple[nn.Module, dict]:
    """RBF SVM with a small grid (C, gamma) selected on the validation pixels (never the test
    split); the chosen model is the one fitted on the training pixels. Without validation
    pixels the grid is scored by 3-fold cross-validation on the training pixels. Platt's sigmoids
    (:func:`fit_pairwise_platt`, on the training pixels) make its output class probabilities; the
    returned ``val_oa`` is that of the most probable class."""
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.svm import SVC

    best = None
    var = float(x_tr.var()) or 1.0
    folds = KFold(3, shuffle=True, random_state=seed)
    for c in (1.0, 10.0, 100.0, 1000.0):
        for g in (1.0 / (x_tr.shape[1] * var), 0.01, 0.1, 1.0):
            if len(y_val):
                score = float((SVC(C=c, gamma=g).fit(x_tr, y_tr).predict(x_val) == y_val).mean())
            else:
                score = float(cross_val_score(SVC(C=c, gamma=g), x_tr, y_tr, cv=folds).mean())
            if best is None or score > best[0]:
                best = (score, c, g)
    score, c, g = best
    clf = SVC(C=c, gamma=g, kernel="rbf").fit(x_tr, y_tr)
    how = "validation OA" if len(y_val) else "3-fold CV accuracy on training pixels"
    log(f"svm: C={c:g}, gamma={g:.4g} ({how} {score:.4f})")
    k = n_classes
    present = clf.classes_.astype(int)
    n_support = np.zeros(k, dtype=np.int64)
    n_support[present] = clf.n_support_
    m = RBFSVM(x_tr.shape[1], k, n_sv=clf.support_vectors_.shape[0], gamma=g, probability=True)
    # libsvm's arrays are indexed by the classes present; expand them to all k classes.
    coef = np.zeros((max(k - 1, 1), clf.support_vectors_.shape[0]))
    inter = np.zeros(k * (k - 1) // 2)
    if len(present) == k:
        # scikit-learn flips the sign of the public arrays for two classes; undo it to get
        # libsvm's convention (positive decision -> the lower class index).
        sign = -1.0 if k == 2 else 1.0
        coef[:] = sign * clf.dual_coef_
        inter[:] = sign * clf.intercept_
    else:
        raise ValueError("every class needs training pixels for the SVM baseline")
    with torch.no_grad():
        m.support_vectors.copy_(torch.from_numpy(clf.support_vectors_.astype(np.float32)))
        m.dual_coef.copy_(torch.from_numpy(coef))
        m.intercept.copy_(torch.from_numpy(inter))
        m.n_support.copy_(torch.from_numpy(n_support))
        platt = torch.from_numpy(fit_pairwise_platt(x_tr, y_tr, k, c, g, seed))
        m.platt_a.copy_(platt[0])
        m.platt_b.copy_(platt[1])
    if len(y_val):
        with torch.no_grad():
            score = float((m(torch.from_numpy(x_val.astype(np.float32))[:, :, None, None]).argmax(1).numpy() == y_val).mean())
        log(f"svm: validation OA {score:.4f} with Platt-scaled probabilities")
    opts = {"n_sv": int(clf.support_vectors_.shape[0]), "gamma": float(g), "C": float(c), "probability": True}
    return m, {**opts, "val_oa": score}


def fit_rf(x_tr, y_tr, x_val, y_val, n_classes: int, seed: int, log=print, n_trees: int = 200) -> tuple[nn.Module, dict]:
    """Random forest (200 trees, sqrt features, scikit-learn defaults otherwise)."""
    from sklearn.ensemble import RandomForestClassifier

    clf = RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1).fit(x_tr, y_tr)
    score = float((clf.predict(x_val) == y_val).mean()) if len(y_val) else None
    trees = [e.tree_ for e in clf.estimators_]
    n_nodes = max(t.node_count for t in trees)
    depth = max(t.max_depth for t in trees)
    m = RandomForest(x_tr.shape[1], n_classes, n_trees=len(trees), n_nodes=n_nodes, depth=depth)
    with torch.no_grad():
        for i, t in enumerate(trees):
            n = t.node_count
            m.left[i, :n] = torch.from_numpy(t.children_left.astype(np.int64))
            m.right[i, :n] = torch.from_numpy(t.children_right.astype(np.int64))
            m.feature[i, :n] = torch.from_numpy(np.maximum(t.feature, 0).astype(np.int64))
            m.threshold[i, :n] = torch.from_numpy(t.threshold.astype(np.float32))
            v = t.value[:, 0, :].astype(np.float64)
            v = v / np.maximum(v.sum(axis=1, keepdims=True), 1e-12)
            full = np.zeros((n, n_classes))
            full[:, clf.classes_.astype(int)] = v
            m.value[i, :n] = torch.from_numpy(full.astype(np.float32))
    if score is not None:
        log(f"rf: {len(trees)} trees, depth {depth} (validation OA {score:.4f})")
    return m, {"n_trees": len(trees), "n_nodes": int(n_nodes), "depth": int(depth), "val_oa": score}


@register_model(
    "svm",
    "RBF SVM on the centre pixel's spectrum (C, gamma picked on validation)",
    kind="classic",
    fit=fit_svm,
    every_class=True,
)
def svm(in_bands: int, n_classes: int, patch_size: int, **opts) -> RBFSVM:
    """RBF SVM baseline (spectral only)."""
    return RBFSVM(in_bands, n_classes, patch_size, **opts)


@register_model(
    "rf", "Random forest (200 trees) on the centre pixel's spectrum", kind="classic", fit=fit_rf, selects_on_validation=False
)
def rf(in_bands: int, n_classes: int, patch_size: int, **opts) -> RandomForest:
    """Random-forest baseline (spectral only)."""
    return RandomForest(in_bands, n_classes, patch_size, **opts)
