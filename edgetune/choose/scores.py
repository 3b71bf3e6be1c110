"""How well frozen features transfer to the user's classes, scored before any training: LogME
and a cross-validated linear probe. Needs numpy (and scikit-learn for the probe), not torch.

LogME (You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021, arXiv:2102.11005): for each class, the log marginal likelihood (evidence)
of a Bayesian linear regression from the features to the class's one-hot column, with the prior
precision alpha and noise precision beta set by evidence maximisation (MacKay's fixed-point
updates); the score is the mean over classes, per image. Higher is better; it needs no labels
held out and no gradient, and one SVD of the feature matrix serves every class.
"""

from __future__ import annotations

import numpy as np

MAX_ITERATIONS = 11  # the paper's fixed-point loop converges in a handful; its code stops at 11
TOLERANCE = 0.01  # relative change of alpha/beta that counts as converged (the paper's)
_TINY = 1e-12


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of `features` (N, D) for integer `labels` (N,): the mean per-class evidence / N."""
    f = np.asarray(features, np.float64).reshape(len(features), -1)
    n, d = f.shape
    # Thin SVD: F = U S V^T. The evidence only needs S² (the eigenvalues of F^T F) and the
    # projections U^T y, so N < D (few images, wide features) costs no more than N > D.
    u, sv, _ = np.linalg.svd(f, full_matrices=False)
    s = sv**2
    evidences = [_evidence(u.T @ y, sv, s, float(y @ y), n, d)
                 for y in ((labels == c).astype(np.float64) for c in np.unique(labels))]
    return float(np.mean(evidences))


def _evidence(x: np.ndarray, sv: np.ndarray, s: np.ndarray, yy: float, n: int, d: int) -> float:
    """Evidence / N of y ~ N(F m, 1/beta), m ~ N(0, 1/alpha); `x` = U^T y, `yy` = |y|²."""
    y = np.asarray(x, np.float64)
    outside = max(yy - float(y @ y), 0.0)  # the part of y no feature direction can reach
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_ITERATIONS):
        gamma = float(np.sum(beta * s / (alpha + beta * s)))
        m = beta * sv * y / (alpha + beta * s)  # the posterior mean, in V's coordinates
        mm = float(m @ m)
        residual = outside + float(np.sum((y * alpha / (alpha + beta * s)) ** 2))
        # Kept above zero: features that are all zero give gamma = 0, and the evidence is then
        # finite (log alpha cancels between the prior and log|A|), not a division by zero.
        new_alpha = max(gamma / (mm + 1e-5), _TINY)
        new_beta = max((n - gamma) / (residual + 1e-5), _TINY)
        done = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < TOLERANCE
        alpha, beta = new_alpha, new_beta
        if done:
            break
    m = beta * sv * y / (alpha + beta * s)
    mm = float(m @ m)
    residual = outside + float(np.sum((y * alpha / (alpha + beta * s)) ** 2))
    # log|A| for A = alpha I + beta F^T F: the D - k directions F never spans add log(alpha) each.
    log_det = float(np.sum(np.log(alpha + beta * s))) + (d - len(s)) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - log_det / 2 - beta / 2 * residual
                - alpha / 2 * mm - n / 2 * np.log(2 * np.pi))
    return float(evidence / n)


def linear_probe(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Mean top-1 of a logistic regression on standardised features, stratified k-fold
    (fewer folds when a class has fewer images)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = np.asarray(features, np.float32).reshape(len(features), -1)
    smallest = int(np.bincount(labels)[np.unique(labels)].min())
    k = max(2, min(folds, smallest))
    # tol 1e-3 (scikit-learn's default 1e-4): on EfficientNet-Lite0's 1280 features of the shipped
    # photographs the probe's five fits took 1.1 s instead of 5.4 s, its top-1 94.3% against 93.3%.
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, tol=1e-3))
    cv = StratifiedKFold(k, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(probe, f, labels, cv=cv)))
