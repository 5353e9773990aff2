"""Retrieval metrics (exact values) and the kb_eval command on both query formats."""

from __future__ import annotations

import json
import math
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from knowledge.evaluation import load_queries, mrr_at, ndcg_at, recall_at
from knowledge.services import DocumentInput, source_sync


def test_metrics_exact() -> None:
    ranked = ["a", "b", "c", "d"]
    rel = {"b": 1, "d": 2}
    assert recall_at(ranked, rel, 1) == 0.0 and recall_at(ranked, rel, 2) == 0.5 and recall_at(ranked, rel, 4) == 1.0
    assert mrr_at(ranked, rel) == 0.5 and mrr_at(["x"], rel) == 0.0
    dcg = 1 / math.log2(3) + 2 / math.log2(5)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(ranked, rel) == pytest.approx(dcg / idcg)


def test_query_formats(tmp_path: Path) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text(
        json.dumps({"_id": "q1", "text": "|user|: how do refunds work"}) + "\n"
        + json.dumps({"task_id": "t1<::>2", "input": [{"speaker": "user", "text": "hi"}, {"speaker": "agent", "text": "hello"},
                                                       {"speaker": "user", "text": "ship to Spain?"}]}) + "\n"
    )
    assert [(q.id, q.text) for q in load_queries(f)] == [("q1", "how do refunds work"), ("t1<::>2", "ship to Spain?")]


@pytest.mark.django_db
def test_kb_eval_json(tmp_path: Path) -> None:
    source_sync(source_name="help", documents=[
        DocumentInput(external_id="refunds", text="Refunds are processed within five business days."),
        DocumentInput(external_id="shipping", text="We ship worldwide; express delivery takes two days."),
        DocumentInput(external_id="password", text="Reset your password from the Security settings page."),
    ])
    q = tmp_path / "q.jsonl"
    q.write_text("\n".join(json.dumps({"_id": i, "text": t}) for i, t in [
        ("q1", "how many days for a refund"), ("q2", "express delivery time"), ("q3", "unjudged question")]) + "\n")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\trefunds\t1\nq2\tshipping\t1\n")
    out = StringIO()
    call_command("kb_eval", "--queries", str(q), "--qrels", str(qrels), "--k", "1,3", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert set(report) == {"keyword", "vector", "hybrid"}
    for mode, row in report.items():
        assert row["queries"] == 2
        assert row["recall@1"] == 1.0 and row["recall@3"] == 1.0 and row["mrr@10"] == 1.0, (mode, row)
        assert row["p95_ms"] >= row["p50_ms"] > 0
    out = StringIO()
    call_command("kb_eval", "--queries", str(q), "--qrels", str(qrels), "--mode", "keyword", stdout=out, stderr=StringIO())
    assert "2 judged queries of 3" in out.getvalue() and "keyword" in out.getvalue() and "hybrid" not in out.getvalue()


@pytest.mark.django_db
def test_kb_eval_bad_input(tmp_path: Path) -> None:
    q = tmp_path / "q.jsonl"
    q.write_text(json.dumps({"_id": "q1", "text": "x"}) + "\n")
    bad = tmp_path / "bad.tsv"
    bad.write_text("qid\tdoc\trel\nq1\td\t1\n")
    with pytest.raises(CommandError, match=rf"{bad}:1: expected the header"):
        call_command("kb_eval", "--queries", str(q), "--qrels", str(bad))
    good = tmp_path / "good.tsv"
    good.write_text("query-id\tcorpus-id\tscore\nother\td\t1\n")
    with pytest.raises(CommandError, match="no query has a judgement"):
        call_command("kb_eval", "--queries", str(q), "--qrels", str(good), stderr=StringIO())
    with pytest.raises(CommandError, match="--k must be"):
        call_command("kb_eval", "--queries", str(q), "--qrels", str(good), "--k", "five")
    q.write_text("{broken\n")
    with pytest.raises(CommandError, match=rf"{q}:1: malformed JSON"):
        call_command("kb_eval", "--queries", str(q), "--qrels", str(good))
