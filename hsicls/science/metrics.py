"""Classification metrics of the field: OA, AA, Cohen's kappa, per-class accuracy, confusion matrix."""

from __future__ import annotations

import numpy as np


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """``y_true``/``y_pred`` 0-based class indices ``(N,)``.

    OA = trace(M) / sum(M); per-class accuracy = recall (diag / row sum), ``None`` for a class
    without test pixels; AA = mean of the defined per-class accuracies; kappa = Cohen's kappa.
    The confusion matrix ``M[i, j]`` counts pixels of true class i predicted as j.
    """
    from sklearn.metrics import cohen_kappa_score, confusion_matrix

    labels = np.arange(n_classes)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    per_class = [float(cm[i, i] / support[i]) if support[i] else None for i in range(n_classes)]
    defined = [a for a in per_class if a is not None]
    oa = float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")
    if len(np.unique(np.concatenate([y_true, y_pred]))) > 1:
        kappa = float(cohen_kappa_score(y_true, y_pred, labels=labels))
    else:  # one class only: kappa is undefined in sklearn; agreement is total
        kappa = 1.0 if oa == 1.0 else 0.0
    return {
        "oa": oa,
        "aa": float(np.mean(defined)) if defined else float("nan"),
        "kappa": kappa,
        "per_class": per_class,
        "support": support.astype(int).tolist(),
        "confusion_matrix": cm.astype(int).tolist(),
    }
