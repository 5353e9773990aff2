"""SDR intent quality on our own held-out split: the production model (MiniLM embeddings + calibrated logistic
regression + an out-of-scope threshold tuned on the dev split, crm.intent) against a TF-IDF + logistic regression
baseline given the same splits and the same threshold tuning.

    .venv/bin/python bench/sdr_intent.py [--seed 7] [--more-seeds 11,13,17,19]

Database ``sdrbot_bench_sdr_intent`` (the trained model is stored there, never in the dev database). Data: HINT3 v2
train (SOFMattress + part of Curekart, mapped), CLINC150 oos_train + oos_val + 3 examples of each in-domain intent
(out of scope for this business), and the team's 44 seed examples (crm/data/intent_seeds.csv); stratified
70 / 15 / 15 train / dev / test, deterministic per seed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

import _common
import _sdr

DB = "sdrbot_bench_sdr_intent"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--more-seeds", default="11,13,17,19", help="other splits, for the spread (mean ± sd)")
    args = ap.parse_args()
    _sdr.setup(DB)
    _common.print_machine_info()
    print(f"  load average before: {os.getloadavg()}")
    from crm import intent

    texts, labels = intent.dataset(_common.DATA, seed=args.seed)
    tr, dv, te = intent.split(labels, seed=args.seed)
    _common.print_header("Data")
    counts = Counter(labels)
    print(f"  {len(texts)} examples: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"  train {len(tr)}, dev {len(dv)}, test {len(te)} (test: "
          + ", ".join(f"{k} {v}" for k, v in sorted(Counter(labels[i] for i in te).items())) + ")")

    t = time.perf_counter()
    rows, thr, m = evaluate_seed(texts, labels, args.seed)
    train_s = time.perf_counter() - t
    _common.print_header(f"Held-out test split ({m['test_n']} examples, seed {args.seed})")
    _common.print_table(["model", "accuracy (7 labels)", "accuracy (sales/support/oos)", "out-of-scope F1", "OOS threshold"],
                        [[name, r["accuracy"], r["top_level_accuracy"], r["oos_f1"], t_] for name, r, t_ in rows])
    print(f"  training (embeddings cached in .data/sdr_intent_embeddings.npz after the first run): {train_s:.1f} s")
    seeds = [args.seed] + [int(x) for x in args.more_seeds.split(",") if x.strip()]
    if len(seeds) > 1:
        import statistics

        per: dict[str, list[dict]] = {}
        for seed in seeds:
            for name, r, _ in evaluate_seed(texts, labels, seed)[0]:
                per.setdefault(name, []).append(r)
        _common.print_header(f"Mean ± sd over {len(seeds)} splits (seeds {', '.join(map(str, seeds))})")
        fmt = lambda xs: f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}"  # noqa: E731
        _common.print_table(["model", "accuracy (7 labels)", "accuracy (sales/support/oos)", "out-of-scope F1"],
                            [[name, fmt([r["accuracy"] for r in rs]), fmt([r["top_level_accuracy"] for r in rs]),
                              fmt([r["oos_f1"] for r in rs])] for name, rs in per.items()])
    print(f"  load average after: {os.getloadavg()}")


def evaluate_seed(texts, labels, seed):
    """Train the production model and the baseline on one split; rows of (name, figures, threshold)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    from crm import intent
    from drafts.classifier import _softmax

    tr, dv, te = intent.split(labels, seed=seed)
    model = intent.intent_train(texts=texts, labels=labels, seed=seed)
    m = model.metrics

    # the baseline: word 1–2-grams + character 2–5-grams TF-IDF, logistic regression, same threshold tuning
    classes = sorted(set(labels))
    base = make_pipeline(make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                                    TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)),
                         LogisticRegression(C=10.0, max_iter=3000, class_weight="balanced"))
    base.fit([texts[i] for i in tr], [labels[i] for i in tr])
    order = [list(base.classes_).index(c) for c in classes]
    dev_p = base.predict_proba([texts[i] for i in dv])[:, order]
    thr, _ = intent.best_threshold(dev_p, [labels[i] for i in dv], classes)
    test_p = base.predict_proba([texts[i] for i in te])[:, order]
    b = intent.evaluate([labels[i] for i in te], intent.predict_labels(test_p, classes, thr))
    # the embedding model without its threshold (argmax only), to show what the tuned threshold adds
    x = intent.embed_cached([texts[i] for i in te])
    logits = x @ np.asarray(model.coef).T + np.asarray(model.intercept)
    raw = intent.evaluate([labels[i] for i in te], intent.predict_labels(_softmax(logits / model.temperature), classes, 0.0))
    ours = {"accuracy": m["test_accuracy"], "top_level_accuracy": m["test_top_level_accuracy"], "oos_f1": m["test_oos_f1"]}
    return ([("MiniLM + calibrated LR + tuned threshold (crm.intent)", ours, m["oos_threshold"]),
             ("  same, argmax only (no threshold)", raw, "—"),
             ("TF-IDF (word 1-2 + char 2-5) + LR, tuned threshold", b, thr)], thr, m)

if __name__ == "__main__":
    main()
