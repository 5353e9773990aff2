"""Embedding providers: the local ONNX model for real, and the OpenAI provider through the real ``openai``
client against a local server that speaks the embeddings protocol."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from sdrbot.embeddings import EmbeddingError, LocalOnnxEmbedder, OpenAIEmbedder, build_embedder


@pytest.fixture(scope="module")
def local() -> LocalOnnxEmbedder:
    return LocalOnnxEmbedder(batch_size=4)


def test_local_vectors_are_unit_384d_and_semantic(local: LocalOnnxEmbedder) -> None:
    texts = ["How do I reset my password?", "I forgot my login password and need a new one",
             "The weather in Lisbon is sunny today"]
    v = local.embed(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]


def test_local_batching_and_order_do_not_change_vectors(local: LocalOnnxEmbedder) -> None:
    texts = [f"sentence number {i} about {'billing' if i % 2 else 'shipping'} " * (1 + i % 5) for i in range(11)]
    together = local.embed(texts)
    alone = np.vstack([local.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=2e-3)  # padding inside a batch is masked out of the mean


def test_identical_texts_embedded_once(local: LocalOnnxEmbedder, monkeypatch) -> None:
    calls: list[list[str]] = []
    real = local._run
    monkeypatch.setattr(local, "_run", lambda batch: calls.append(batch) or real(batch))
    out = local.embed(["same", "other", "same", "same"])
    assert sum(len(b) for b in calls) == 2
    assert np.array_equal(out[0], out[2]) and np.array_equal(out[0], out[3])


def test_long_text_is_truncated_not_rejected(local: LocalOnnxEmbedder) -> None:
    v = local.embed(["word " * 5000])
    assert v.shape == (1, 384)
    assert local.count_tokens("word " * 5000) == 5000


def _embedding_server(recording_server, dims: int, fail_first: int = 0):
    state = {"n": 0}

    def handler(method, path, headers, body):
        state["n"] += 1
        if state["n"] <= fail_first:
            return 500, {"Content-Type": "application/json"}, b'{"error": {"message": "upstream broke"}}'
        req = json.loads(body)
        rng = np.random.default_rng(len(req["input"]))
        data = []
        for i, text in enumerate(req["input"]):
            vec = rng.normal(size=req.get("dimensions") or dims).astype(np.float32) * (1 + len(text))
            emb = base64.b64encode(vec.tobytes()).decode() if req.get("encoding_format") == "base64" else vec.tolist()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        data.reverse()  # servers may answer out of order; the provider must sort by index
        payload = {"object": "list", "data": data, "model": req["model"],
                   "usage": {"prompt_tokens": 3, "total_tokens": 3}}
        return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()

    return recording_server(handler)


def test_openai_provider_through_real_client(recording_server) -> None:
    server = _embedding_server(recording_server, 384)
    emb = OpenAIEmbedder(model="text-embedding-3-small", dimensions=384, api_key="sk-test", base_url=server.url + "/v1",
                         timeout=5, batch_size=2)
    out = emb.embed(["alpha", "beta", "alpha", "gamma"])
    assert out.shape == (4, 384)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(out[0], out[2])
    bodies = server.json_bodies()
    assert [b["input"] for b in bodies] == [["alpha", "beta"], ["gamma"]]  # deduped, batched by 2
    assert all(b["dimensions"] == 384 and b["model"] == "text-embedding-3-small" for b in bodies)
    assert server.requests[0]["path"] == "/v1/embeddings"
    assert server.requests[0]["headers"]["authorization"] == "Bearer sk-test"


def test_openai_provider_retries_a_5xx(recording_server) -> None:
    server = _embedding_server(recording_server, 384, fail_first=1)
    emb = OpenAIEmbedder(model="m", dimensions=384, api_key="k", base_url=server.url + "/v1", timeout=5, max_retries=2)
    assert emb.embed(["x"]).shape == (1, 384)
    assert len(server.requests) == 2


def test_openai_provider_wrong_dimensions_is_an_error(recording_server) -> None:
    server = recording_server(lambda m, p, h, b: (200, {"Content-Type": "application/json"}, json.dumps(
        {"object": "list", "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1},
         "data": [{"object": "embedding", "index": 0, "embedding": [0.1] * 10}]}).encode()))
    emb = OpenAIEmbedder(model="m", dimensions=384, api_key="k", base_url=server.url + "/v1", timeout=5)
    with pytest.raises(EmbeddingError, match="10-d vectors"):
        emb.embed(["x"])


def test_openai_provider_failure_is_an_embedding_error(recording_server) -> None:
    server = recording_server(lambda m, p, h, b: (401, {"Content-Type": "application/json"},
                                                 b'{"error": {"message": "bad key"}}'))
    emb = OpenAIEmbedder(model="m", dimensions=384, api_key="k", base_url=server.url + "/v1", timeout=5, max_retries=0)
    with pytest.raises(EmbeddingError, match="failed"):
        emb.embed(["x"])


def test_unknown_provider_and_dimension_mismatch(settings) -> None:
    with pytest.raises(EmbeddingError, match="must be 'local' or 'openai'"):
        build_embedder("nonsense")
    settings.EMBEDDING_DIMENSIONS = 512
    with pytest.raises(EmbeddingError, match="EMBEDDING_DIMENSIONS=512"):
        build_embedder("local")
