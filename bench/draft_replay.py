"""Offline replay of the held-out tickets: every test-split Bitext ticket (11 categories) and every test-split
Twitter CDP ticket (one category per brand) through the drafting pipeline (``drafts.replay.replay``, nothing
stored), the draft compared with the reply the agent actually sent, and with the baseline "the category's medoid
train reply".

    .venv/bin/python bench/draft_replay.py [--classify] [--limit N] [--json out.json]

Same metrics and code path as ``manage.py draft_replay --split test`` (which replays both sets together); here the
two datasets are reported separately, each with its overall row, and per category the margin of the responder
over the baseline on edit similarity (``Δ sim``; negative = the baseline is better). Setup (imports, classifiers)
as in bench/_drafting.py. With ``--classify`` the true category is withheld and the classifier must find it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _drafting  # noqa: E402

COLUMNS = ["n", "edit_similarity", "baseline_similarity", "literal_baseline_similarity", "token_f1", "baseline_f1",
           "grounding", "abstain_rate", "p50_ms", "p95_ms"]
SHORT = {"edit_similarity": "edit_sim", "baseline_similarity": "base_sim", "literal_baseline_similarity": "lit_sim",
         "token_f1": "f1", "baseline_f1": "base_f1",
         "abstain_rate": "abstain", "grounding": "grounding", "p50_ms": "p50 ms", "p95_ms": "p95 ms", "n": "n"}


def _cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, int):
        return str(v)
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"


def with_baseline_overall(report: dict) -> dict | None:
    """Overall figures over the categories that have a baseline (n-weighted means of the per-category means =
    means over their tickets). ``replay`` leaves the overall baseline out when any category lacks train replies
    (Twitter: Ask_Spectrum has none)."""
    cats = [r for r in report["categories"].values() if "baseline_similarity" in r]
    if not cats or len(cats) == len(report["categories"]):
        return None
    n = sum(r["n"] for r in cats)
    out = {"n": n, "categories": len(cats)}
    for key in ("edit_similarity", "baseline_similarity", "literal_baseline_similarity", "token_f1", "baseline_f1",
                "abstain_rate"):
        if all(key in r for r in cats):
            out[key] = round(sum(r[key] * r["n"] for r in cats) / n, 4)
    out["beats_baseline"] = out["edit_similarity"] > out["baseline_similarity"]
    return out


def print_report(title: str, report: dict, *, names: dict[str, str]) -> dict:
    _common.print_header(title)
    rows = []
    losers, ties = [], []
    partial = with_baseline_overall(report)
    items = [*report["categories"].items(), ("OVERALL", report["overall"])]
    if partial:
        items.append(("OVERALL w/ baseline", partial))
    for slug, r in items:
        delta = (r["edit_similarity"] - r["baseline_similarity"]) if "baseline_similarity" in r else None
        beats = r.get("beats_baseline")
        verdict = "–" if delta is None else "yes" if delta > 0 else "tie" if abs(delta) < 5e-5 else "NO"
        rows.append([names.get(slug, slug)[:26], *(_cell(r.get(c)) for c in COLUMNS),
                     "–" if delta is None else f"{delta:+.4f}", verdict,
                     " ".join(f"{k}:{v}" for k, v in sorted(r.get("strategies", {}).items()))])
        if slug in report["categories"] and beats is False:
            entry = {"category": slug, "edit_similarity": r["edit_similarity"],
                     "baseline_similarity": r["baseline_similarity"], "delta": round(delta, 4), "n": r["n"]}
            (ties if verdict == "tie" else losers).append(entry)
    _common.print_table(["category", *(SHORT[c] for c in COLUMNS), "Δ sim", "beats", "strategies"], rows)
    print("  edit_sim/f1: the draft vs the agent's reply; base_*: the category's medoid train reply (replay's baseline);"
          " lit_sim: the literal most common reply; Δ sim = edit_sim − base_sim")
    o = report["overall"]
    if "category_accuracy" in o:
        print(f"  classifier accuracy (category withheld): {o['category_accuracy']:.4f}")
    with_base = [s for s, r in report["categories"].items() if "baseline_similarity" in r]
    no_base = [s for s in report["categories"] if s not in with_base]
    wins = len(with_base) - len(losers) - len(ties)
    ref = o if "baseline_similarity" in o else partial
    print(f"  beats the baseline on edit similarity in {wins}/{len(with_base)} categories with a baseline"
          f" ({len(ties)} ties: the same reply{', no baseline: ' + ', '.join(no_base) if no_base else ''}); "
          f"overall {ref['edit_similarity']:.4f} vs {ref['baseline_similarity']:.4f} "
          f"({ref['edit_similarity'] - ref['baseline_similarity']:+.4f})")
    for lo in sorted(losers, key=lambda x: x["delta"]):
        print(f"    loses: {names.get(lo['category'], lo['category'])} (n={lo['n']}): "
              f"{lo['edit_similarity']:.4f} vs baseline {lo['baseline_similarity']:.4f} ({lo['delta']:+.4f})")
    for t in ties:
        print(f"    tie:   {names.get(t['category'], t['category'])} (n={t['n']}): {t['edit_similarity']:.4f}")
    return {"losers": losers, "ties": ties, "wins": wins, "with_baseline": len(with_base), "no_baseline": no_base,
            "overall_with_baseline": ref}


def main(*, classify: bool = False, limit: int | None = None, machine: bool = True) -> dict:
    started = time.perf_counter()
    info = _drafting.setup()
    if machine:
        _common.print_machine_info()
    info["code"] = _drafting.print_code_version()
    from conversations.models import Category
    from drafts.replay import cases_from_db, replay

    names = dict(Category.objects.values_list("slug", "name"))
    cases = cases_from_db(split="test")
    sets = {
        "Bitext (held-out test split)": [c for c in cases if c.ref.startswith("bitext-")],
        "Twitter CDP (held-out test split)": [c for c in cases if not c.ref.startswith("bitext-")],
    }
    results: dict = {"setup": info, "given_category": not classify, "sets": {}}
    for title, subset in sets.items():
        if limit:
            subset = subset[:limit]
        print(f"\n  replaying {len(subset)} tickets of {title} "
              f"({len({c.category for c in subset})} categories, category {'withheld' if classify else 'given'}) ...",
              flush=True)
        t = time.perf_counter()
        report = replay(subset, given_category=not classify)
        wall = time.perf_counter() - t
        verdict = print_report(f"{title}: offline responder vs category medoid baseline", report, names=names)
        print(f"  {len(subset)} drafts in {wall:.1f} s")
        results["sets"][title] = {"report": report, **verdict, "wall_s": round(wall, 1)}

    _common.print_header("Replay: summary")
    for title, r in results["sets"].items():
        o = r["report"]["overall"]
        b = r["overall_with_baseline"]
        scope = "" if b is o else f" (over the {b['n']} tickets of categories with a baseline)"
        print(f"  {title}: n={o['n']}, edit similarity {b['edit_similarity']:.4f} vs baseline "
              f"{b['baseline_similarity']:.4f}, token F1 {b['token_f1']:.4f} vs {b['baseline_f1']:.4f}{scope}; "
              f"beats the baseline in {r['wins']}/{r['with_baseline']} categories ({len(r['ties'])} ties, "
              f"{len(r['losers'])} losses); abstain {o['abstain_rate']:.3f}; p50/p95 {o['p50_ms']:.1f}/{o['p95_ms']:.1f} ms")
    print(f"  total time {time.perf_counter() - started:.0f} s")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classify", action="store_true", help="withhold the true category (the classifier runs)")
    ap.add_argument("--limit", type=int, default=None, help="at most N tickets per dataset (a quick look)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = main(classify=a.classify, limit=a.limit)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, default=str))
