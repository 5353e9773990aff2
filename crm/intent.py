"""Sales / support / out-of-scope intent, with sales sub-intents, for the SDR flow.

The model is the drafting classifier's (drafts.classifier): multinomial logistic regression on MiniLM sentence
embeddings, temperature-calibrated (Guo et al., ICML 2017), stored in ``ClassifierModel`` (target ``sdr_intent``).
On top, an **out-of-scope threshold**: a message is out of scope when the most probable label is ``out_of_scope``
or its calibrated probability is below the threshold tuned on a dev split to maximise out-of-scope F1.

Training data (``../shared/data``; mapping table below and in README "Sales (SDR)"):
- HINT3 v2 train, SOFMattress (pre-sales and support intents of a mattress seller) and part of Curekart;
- CLINC150 ``oos_train`` + ``oos_val`` and a sample of its in-domain intents (banking, travel, small talk… are
  out of scope for this business), except the intents that are normal replies inside a sales chat (yes, no,
  greeting, thanks…) or commerce support (order status, cancel);
- ``crm/data/intent_seeds.csv``: 44 short B2B examples written by the sdrbot team for the labels the public data
  lacks (objection, B2B demo requests and pricing), labelled as such.
"""

from __future__ import annotations

import csv
import os
import hashlib
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

SEEDS = Path(__file__).resolve().parent / "data" / "intent_seeds.csv"
TARGET = "sdr_intent"
OUT_OF_SCOPE = "out_of_scope"
SUPPORT = "support"
SALES_SUB_INTENTS = ["pricing", "demo_request", "product_question", "objection", "partnership"]

# HINT3 label → our label. Labels not listed are left out (ambiguous for sales vs support).
HINT3_MAP: dict[str, dict[str, str]] = {
    "sofmattress": {
        "MATTRESS_COST": "sales/pricing", "EMI": "sales/pricing", "OFFERS": "sales/pricing", "COD": "sales/pricing",
        "LEAD_GEN": "sales/demo_request",
        "PRODUCT_VARIANTS": "sales/product_question", "COMPARISON": "sales/product_question",
        "WHAT_SIZE_TO_ORDER": "sales/product_question", "ERGO_FEATURES": "sales/product_question",
        "ORTHO_FEATURES": "sales/product_question", "PILLOWS": "sales/product_question",
        "SIZE_CUSTOMIZATION": "sales/product_question", "ABOUT_SOF_MATTRESS": "sales/product_question",
        "100_NIGHT_TRIAL_OFFER": "sales/product_question", "CHECK_PINCODE": "sales/product_question",
        "DISTRIBUTORS": "sales/partnership",
        "ORDER_STATUS": "support", "DELAY_IN_DELIVERY": "support", "CANCEL_ORDER": "support",
        "RETURN_EXCHANGE": "support", "WARRANTY": "support",
    },
    "curekart": {
        "FRANCHISE": "sales/partnership", "ORDER_STATUS": "support", "REFUNDS_RETURNS_REPLACEMENTS": "support",
        "RESUME_DELIVERY": "support", "DELAY_IN_PARCEL": "support", "MODIFY_ADDRESS": "support",
        "CANCEL_ORDER": "support", "PORTAL_ISSUE": "support", "ORDER_QUERY": "support", "PAYMENT_AND_BILL": "support",
    },
}
CURATED_CAP = 25  # examples per HINT3 label at most (Curekart's support labels would otherwise dominate)
CLINC_EXCLUDED = {"yes", "no", "maybe", "greeting", "goodbye", "thank_you", "order_status", "cancel", "order",
                  "are_you_a_bot", "what_can_i_ask_you", "who_do_you_work_for", "repeat"}
CLINC_PER_INTENT = 3


@dataclass(frozen=True)
class IntentPrediction:
    intent: str  # sales | support | out_of_scope
    sub_intent: str  # for sales: pricing | demo_request | product_question | objection | partnership
    confidence: float  # calibrated probability of the predicted label, 0–1
    label: str  # the classifier's label ("sales/pricing", "support", "out_of_scope")
    top: list[tuple[str, float]]


def split_label(label: str) -> tuple[str, str]:
    intent, _, sub = label.partition("/")
    return intent, sub


def dataset(data_dir: Path, *, seed: int = 7) -> tuple[list[str], list[str]]:
    """The labelled examples (texts, labels) described in the module docstring, deduplicated by lower-cased text."""
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    for bot, mapping in HINT3_MAP.items():
        with open(data_dir / "hint3" / "v2" / "train" / f"{bot}_train.csv", newline="", encoding="utf-8") as f:
            by_label: dict[str, list[str]] = {}
            for r in csv.DictReader(f):
                if r["label"] in mapping:
                    by_label.setdefault(r["label"], []).append(r["sentence"].strip())
        for lab, texts in by_label.items():
            rng.shuffle(texts)
            rows += [(t, mapping[lab]) for t in texts[:CURATED_CAP]]
    clinc = json.loads((data_dir / "clinc150" / "data_full.json").read_text())
    rows += [(t, OUT_OF_SCOPE) for t, _ in clinc["oos_train"] + clinc["oos_val"]]
    by_intent: dict[str, list[str]] = {}
    for t, lab in clinc["train"]:
        if lab not in CLINC_EXCLUDED:
            by_intent.setdefault(lab, []).append(t)
    for lab in sorted(by_intent):
        rows += [(t, OUT_OF_SCOPE) for t in rng.sample(by_intent[lab], CLINC_PER_INTENT)]
    with open(SEEDS, newline="", encoding="utf-8") as f:
        rows += [(r["sentence"].strip(), r["label"]) for r in csv.DictReader(f)]
    seen: set[str] = set()
    texts, labels = [], []
    for t, lab in rows:
        k = " ".join(t.lower().split())
        if k and k not in seen:
            seen.add(k)
            texts.append(t)
            labels.append(lab)
    return texts, labels


def training_subset(texts: Sequence[str], labels: Sequence[str], per_label: int) -> tuple[list[str], list[str]]:
    """A small training set (tests, quick demos): the team's seed examples plus the first ``per_label`` others of
    each label."""
    with open(SEEDS, newline="", encoding="utf-8") as f:
        seeds = {" ".join(r["sentence"].lower().split()) for r in csv.DictReader(f)}
    seen: Counter[str] = Counter()
    keep = []
    for i, (t, lab) in enumerate(zip(texts, labels)):
        if " ".join(t.lower().split()) in seeds:
            keep.append(i)
        elif seen[lab] < per_label:
            seen[lab] += 1
            keep.append(i)
    return [texts[i] for i in keep], [labels[i] for i in keep]


def split(labels: Sequence[str], *, seed: int = 7, dev: float = 0.15, test: float = 0.15) -> tuple[list[int], list[int], list[int]]:
    """Stratified train / dev / test indices (deterministic per seed)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    y = np.asarray(labels)
    rest, test_idx = train_test_split(idx, test_size=test, random_state=seed, stratify=y)
    train_idx, dev_idx = train_test_split(rest, test_size=dev / (1 - test), random_state=seed, stratify=y[rest])
    return sorted(train_idx.tolist()), sorted(dev_idx.tolist()), sorted(test_idx.tolist())


def embed_cached(texts: Sequence[str]) -> np.ndarray:
    """Embeddings of ``texts`` with the active embedder, cached per text in ``.data/sdr_intent_embeddings.npz``
    (embedding ~1,300 texts costs about 30 s on two cores; the cache makes re-training instant)."""
    from sdrbot.embeddings import get_embedder

    emb = get_embedder()
    from sdrbot.devservices import DATA_DIR

    path = DATA_DIR / "sdr_intent_embeddings.npz"
    tag = hashlib.sha1(emb.name.encode()).hexdigest()[:8]
    cache: dict[str, np.ndarray] = {}
    try:
        with np.load(path) as z:
            cache = {k: z[k] for k in z.files}
    except (OSError, ValueError):
        pass
    keys = [f"{tag}-{hashlib.sha1(t.encode()).hexdigest()}" for t in texts]
    missing = sorted({(k, t) for k, t in zip(keys, texts) if k not in cache})
    if missing:
        vecs = emb.embed([t for _, t in missing])
        for (k, _), v in zip(missing, vecs):
            cache[k] = np.asarray(v, dtype=np.float32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, allow_pickle=True, **cache)  # numpy's default, spelled out: else mypy checks **cache's arrays against it
            tmp.replace(path)
        except OSError:
            pass
    return np.stack([cache[k] for k in keys])


def best_threshold(probs: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> tuple[float, float]:
    """The confidence threshold (0–0.95, step 0.01) maximising out-of-scope F1 on these examples; (threshold, F1)."""
    best = (0.0, -1.0)
    for t in np.round(np.arange(0.0, 0.96, 0.01), 2):
        pred = predict_labels(probs, classes, float(t))
        f1 = oos_f1(labels, pred)
        if f1 > best[1] + 1e-9:
            best = (float(t), f1)
    return best


def predict_labels(probs: np.ndarray, classes: Sequence[str], threshold: float) -> list[str]:
    top = probs.argmax(axis=1)
    return [OUT_OF_SCOPE if probs[i, j] < threshold else classes[j] for i, j in enumerate(top)]


def oos_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    tp = sum(g == OUT_OF_SCOPE and p == OUT_OF_SCOPE for g, p in zip(gold, pred))
    fp = sum(g != OUT_OF_SCOPE and p == OUT_OF_SCOPE for g, p in zip(gold, pred))
    fn = sum(g == OUT_OF_SCOPE and p != OUT_OF_SCOPE for g, p in zip(gold, pred))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def evaluate(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """Accuracy over the full labels, over sales / support / out of scope, and out-of-scope F1."""
    n = len(gold)
    return {"accuracy": round(sum(g == p for g, p in zip(gold, pred)) / n, 4),
            "top_level_accuracy": round(sum(split_label(g)[0] == split_label(p)[0] for g, p in zip(gold, pred)) / n, 4),
            "oos_f1": round(oos_f1(gold, pred), 4), "n": n}


def intent_train(*, texts: Sequence[str], labels: Sequence[str], seed: int = 7, c: float = 10.0,
                 activate: bool = True):
    """Train on the train split, calibrate the temperature on a fifth of it, tune the out-of-scope threshold on the
    dev split, evaluate on the test split, and store the model (active when ``activate``). Returns the
    ``ClassifierModel``; its ``metrics`` hold the held-out figures and ``oos_threshold``. Raises ``ValueError`` with
    fewer than two labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from drafts.classifier import _fit_temperature, _logits, _softmax
    from drafts.models import ClassifierModel
    from sdrbot.embeddings import get_embedder

    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError("need at least two labels")
    tr, dv, te = split(labels, seed=seed)
    x = embed_cached(texts)
    y = np.array([classes.index(lab) for lab in labels])
    x_fit, x_cal, y_fit, y_cal = train_test_split(x[tr], y[tr], test_size=0.2, random_state=seed, stratify=y[tr])
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    clf.fit(x_fit, y_fit)
    temperature = _fit_temperature(_logits(clf, x_cal), y_cal)
    clf.fit(x[tr], y[tr])
    dev_probs = _softmax(_logits(clf, x[dv]) / temperature)
    threshold, dev_f1 = best_threshold(dev_probs, [labels[i] for i in dv], classes)
    test_probs = _softmax(_logits(clf, x[te]) / temperature)
    test_pred = predict_labels(test_probs, classes, threshold)
    metrics = {**{f"test_{k}": v for k, v in evaluate([labels[i] for i in te], test_pred).items()},
               "oos_threshold": threshold, "dev_oos_f1": round(dev_f1, 4), "train_n": len(tr), "dev_n": len(dv),
               "label_counts": dict(Counter(labels)), "seed": seed}
    with transaction.atomic():
        if activate:
            ClassifierModel.objects.filter(target=TARGET, is_active=True).update(is_active=False)
        model = ClassifierModel.objects.create(
            target=TARGET, embedding_model=get_embedder().name, labels=classes, coef=clf.coef_.round(6).tolist(),
            intercept=clf.intercept_.round(6).tolist(), temperature=temperature, metrics=metrics,
            trained_on=len(tr), is_active=activate)
    return model


_THRESHOLDS: dict[int, float] = {}  # model id → tuned threshold (a model row never changes once stored)


def _threshold(model_id: int) -> float:
    from drafts.models import ClassifierModel

    if settings.SDR_INTENT_MIN_CONFIDENCE > 0:
        return settings.SDR_INTENT_MIN_CONFIDENCE
    t = _THRESHOLDS.get(model_id)
    if t is None:
        t = float((ClassifierModel.objects.filter(pk=model_id).values_list("metrics", flat=True).first() or {})
                  .get("oos_threshold", 0.0))
        _THRESHOLDS[model_id] = t
    return t


def intent_classify(embedding: np.ndarray, *, model_id: int | None = None) -> IntentPrediction | None:
    """Predict from a message embedding with the active ``sdr_intent`` model (``model_id`` when the caller looked it
    up already); None when none is trained."""
    from drafts import classifier

    model_id = model_id or classifier.active_model_id(TARGET)
    if model_id is None:
        return None
    pred = classifier.classify(embedding, target=TARGET, model_id=model_id)
    if pred is None:
        return None
    label = pred.label if pred.confidence >= _threshold(model_id) else OUT_OF_SCOPE
    intent, sub = split_label(label)
    return IntentPrediction(intent=intent, sub_intent=sub, confidence=pred.confidence, label=label, top=pred.top)
