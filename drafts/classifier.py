"""Ticket classification: multinomial logistic regression (scikit-learn) on sentence embeddings of the customer's
message, with temperature scaling fitted on a held-out fifth so that confidences are calibrated (Guo et al.,
"On Calibration of Modern Neural Networks", ICML 2017). Weights live in the database (ClassifierModel), so every
web and worker process predicts with the same model without shared files."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db import transaction

from drafts.models import ClassifierModel
from sdrbot.embeddings import get_embedder

TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(5.0), 60))


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float  # calibrated probability of ``label``, 0–1
    top: list[tuple[str, float]]  # the three most probable labels


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _logits(clf, x: np.ndarray) -> np.ndarray:
    """Per-class logits; a binary model's single decision value d is the softmax pair (0, d)."""
    d = clf.decision_function(x)
    return np.column_stack([np.zeros_like(d), d]) if d.ndim == 1 else d


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of held-out labels (grid search, 0.05–5)."""
    best, best_nll = 1.0, np.inf
    for t in TEMPERATURES:
        p = _softmax(logits / t)[np.arange(len(y)), y]
        nll = -np.log(np.clip(p, 1e-12, None)).mean()
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best


def expected_calibration_error(probs: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-width confidence bins (Naeini et al. 2015)."""
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (probs > lo) & (probs <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - probs[mask].mean())
    return float(ece)


def classifier_train(*, texts: Sequence[str], labels: Sequence[str], target: str, min_per_label: int = 5,
                     seed: int = 0, c: float = 10.0) -> ClassifierModel:
    """Train, calibrate, evaluate on the held-out fifth, and store as the active model for ``target``.
    Labels with fewer than ``min_per_label`` examples are left out. Raises ``ValueError`` with fewer than two
    labels. Returns the stored model; ``metrics`` holds held-out accuracy, ECE and counts."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    keep = [i for i, lab in enumerate(labels) if counts[lab] >= min_per_label]
    classes = sorted({labels[i] for i in keep})
    if len(classes) < 2:
        raise ValueError(f"need at least two labels with {min_per_label}+ examples, got {len(classes)}")
    emb = get_embedder()
    x = emb.embed([texts[i] for i in keep])
    y = np.array([classes.index(labels[i]) for i in keep])
    x_fit, x_cal, y_fit, y_cal = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(x_fit, y_fit)
    temperature = _fit_temperature(_logits(clf, x_cal), y_cal)
    probs = _softmax(_logits(clf, x_cal) / temperature)
    pred = probs.argmax(axis=1)
    metrics = {
        "heldout_accuracy": round(float((pred == y_cal).mean()), 4),
        "heldout_ece": round(expected_calibration_error(probs.max(axis=1), pred == y_cal), 4),
        "heldout_n": int(len(y_cal)), "labels": len(classes), "dropped_rare": len(labels) - len(keep),
    }
    clf.fit(x, y)  # final weights on everything; the temperature from the held-out fit carries over
    with transaction.atomic():
        ClassifierModel.objects.filter(target=target, is_active=True).update(is_active=False)
        model = ClassifierModel.objects.create(
            target=target, embedding_model=emb.name, labels=classes, coef=clf.coef_.round(6).tolist(),
            intercept=clf.intercept_.round(6).tolist(), temperature=temperature, metrics=metrics,
            trained_on=len(keep), is_active=True,
        )
    return model


@functools.lru_cache(maxsize=8)
def _weights(pk: int) -> tuple[list[str], np.ndarray, np.ndarray, float, str]:
    m = ClassifierModel.objects.get(pk=pk)
    return m.labels, np.asarray(m.coef, dtype=np.float32), np.asarray(m.intercept, dtype=np.float32), m.temperature, m.embedding_model


def active_model_id(target: str) -> int | None:
    return ClassifierModel.objects.filter(target=target, is_active=True).values_list("pk", flat=True).first()


def active_model_ids() -> dict[str, int]:
    """{target: id} of every active model, in one query (a draft classifies several targets)."""
    return dict(ClassifierModel.objects.filter(is_active=True).values_list("target", "pk"))


def classify(embedding: np.ndarray, *, target: str, model_id: int | None = None,
             active: dict[str, int] | None = None) -> Prediction | None:
    """Predict from a message embedding (unit vector of the active embedding model). None when no model is
    trained for ``target`` or it was trained with another embedding model. ``active`` is
    :func:`active_model_ids` when the caller already has it (no query then)."""
    if model_id is None:
        model_id = active.get(target) if active is not None else active_model_id(target)
    if model_id is None:
        return None
    labels, coef, intercept, temperature, emb_model = _weights(model_id)
    if emb_model != get_embedder().name:
        return None
    if coef.shape[0] == 1:  # binary: scikit-learn stores one row
        logits = np.array([0.0, float(embedding @ coef[0] + intercept[0])])
    else:
        logits = coef @ embedding + intercept
    probs = _softmax(logits / temperature)
    order = np.argsort(-probs)[:3]
    return Prediction(labels[order[0]], round(float(probs[order[0]]), 4), [(labels[i], round(float(probs[i]), 4)) for i in order])
