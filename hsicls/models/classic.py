"""Spectral-only baselines: RBF SVM and random forest on the centre pixel's (PCA) spectrum.

They are fitted with scikit-learn, then stored as plain tensors and evaluated by small torch
modules, so that they go through the same model bundle (``torch.load(weights_only=True)``, no
pickled estimators), ``evaluate`` and ``predict-map`` as the deep models. Both take patches
``(B, bands, P, P)`` and look only at the centre pixel ``(B, bands)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .registry import register_model


def _centre(x: torch.Tensor) -> torch.Tensor:
    return x[:, :, x.shape[2] // 2, x.shape[3] // 2]


class RBFSVM(nn.Module):
    """libsvm's one-vs-one RBF SVM decision, reproduced from scikit-learn's fitted arrays.

    For classes i < j (pair p): dec_p(x) = sum_{s in SV_i} a[j-1, s] K(s, x) + sum_{s in SV_j} a[i, s] K(s, x)
    + b_p, with K(s, x) = exp(-gamma ||s - x||^2); a positive decision votes for i, else j.
    Output: votes per class ``(B, classes)`` (plus a tiny margin term to break ties as libsvm does,
    towards the lower class index).
    """

    def __init__(self, in_bands: int, n_classes: int, patch_size: int = 1, n_sv: int = 1, gamma: float = 1.0, **_: Any):
        super().__init__()
        self.n_classes = n_classes
        self.gamma = float(gamma)
        self.register_buffer("support_vectors", torch.zeros(int(n_sv), in_bands))
        self.register_buffer("dual_coef", torch.zeros(max(n_classes - 1, 1), int(n_sv), dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(n_classes * (n_classes - 1) // 2, dtype=torch.float64))
        self.register_buffer("n_support", torch.zeros(n_classes, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = _centre(x).double()
        sv = self.support_vectors.double()
        k = torch.exp(-self.gamma * torch.cdist(c, sv).pow(2))  # (B, n_sv)
        starts = torch.cumsum(self.n_support, 0) - self.n_support
        votes = torch.zeros(c.shape[0], self.n_classes, dtype=torch.float64, device=x.device)
        p = 0
        for i in range(self.n_classes):
            si = slice(int(starts[i]), int(starts[i] + self.n_support[i]))
            for j in range(i + 1, self.n_classes):
                sj = slice(int(starts[j]), int(starts[j] + self.n_support[j]))
                dec = k[:, si] @ self.dual_coef[j - 1, si] + k[:, sj] @ self.dual_coef[i, sj] + self.intercept[p]
                win = dec > 0
                votes[:, i] += win
                votes[:, j] += ~win
                p += 1
        tie_break = -1e-6 * torch.arange(self.n_classes, device=x.device, dtype=torch.float64)
        return (votes + tie_break).float()


class RandomForest(nn.Module):
    """A fitted scikit-learn forest as padded node tables ``(trees, nodes)``; output: class
    probabilities averaged over trees ``(B, classes)``, as ``predict_proba``."""

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
        return self.value[tree, node].mean(dim=1)


def fit_svm(x_tr, y_tr, x_val, y_val, n_classes: int, seed: int, log=print) -> tuple[nn.Module, dict]:
    """RBF SVM with a small grid (C, gamma) selected on the validation pixels (never the test
    split); the chosen model is the one fitted on the training pixels. Without validation
    pixels the grid is scored by 3-fold cross-validation on the training pixels."""
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
    m = RBFSVM(x_tr.shape[1], k, n_sv=clf.support_vectors_.shape[0], gamma=g)
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
    return m, {"n_sv": int(clf.support_vectors_.shape[0]), "gamma": float(g), "C": float(c), "val_oa": score}


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
    probabilistic=False,
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
