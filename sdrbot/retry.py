"""Retry policy for *thinking* (model and retrieval calls): bounded attempts, exponential backoff with full jitter
(delay ~ U(0, min(cap, base·2^n)), "Exponential Backoff And Jitter", AWS Architecture Blog, 2015), via tenacity.
Side effects never use this: they retry only through their idempotency key."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from tenacity import (AttemptManager, RetryCallState, Retrying, retry_if_exception, stop_after_attempt,
                      wait_random_exponential)


def transient_llm_error(exc: BaseException) -> bool:
    """Timeouts, connection errors, 429 and 5xx from an OpenAI-compatible server."""
    import openai

    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError)):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def transient_db_error(exc: BaseException) -> bool:
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, (OperationalError, InterfaceError))


def attempts(predicate, *, max_attempts: int | None = None, base_s: float | None = None,
             cap_s: float | None = None) -> Iterable[AttemptManager]:
    """``for attempt in attempts(transient_llm_error): with attempt: ...`` — re-runs the block on a transient
    error, up to ``max_attempts`` (default ``RETRY_MAX_ATTEMPTS``), then re-raises the last error.
    ``attempt.retry_state.attempt_number`` is 1-based."""
    return Retrying(
        stop=stop_after_attempt(max_attempts or settings.RETRY_MAX_ATTEMPTS),
        wait=wait_random_exponential(multiplier=base_s if base_s is not None else settings.RETRY_BASE_SECONDS,
                                     max=cap_s if cap_s is not None else settings.RETRY_MAX_SECONDS),
        retry=retry_if_exception(predicate),
        reraise=True,
    )


def attempt_number(attempt) -> int:
    state: RetryCallState = attempt.retry_state
    return state.attempt_number
