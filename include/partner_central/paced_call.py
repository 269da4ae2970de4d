"""One API call paced by a rate limiter, its failure sorted into an ApiError: what every write path sends through."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from include.partner_central.api_errors import ApiError, classify, is_api_failure
from include.partner_central.rate_limit import RateLimiter, Unpaced
from include.partner_central.retry_policy import RetryPolicy
from include.partner_central.service_model import snake_case


@contextmanager
def paced(client: Any, limiter: RateLimiter, operation: str) -> Iterator[None]:
    """Take the limiter's slot at botocore's before-send, once the request is built and signed: the slot then marks
    when the request leaves, not when building it began (the first call of a client spends a while on that)."""

    def wait_for_slot(**_: Any) -> None:
        limiter.acquire()

    event = f"before-send.{client.meta.service_model.service_name}.{operation}"
    client.meta.events.register_first(event, wait_for_slot)
    try:
        yield
    finally:
        client.meta.events.unregister(event, wait_for_slot)


def retry_logger(
    logger: logging.Logger | logging.LoggerAdapter, operation: str, name: str
) -> Callable[[ApiError, int, float], None]:
    """What each write path logs before a retry (RetryPolicy.call's on_retry)."""

    def on_retry(error: ApiError, attempt: int, wait: float) -> None:
        logger.warning("%s %s: attempt %d failed (%s); retrying in %.1fs", operation, name, attempt, error, wait)

    return on_retry


def send_paced(client: Any, operation: str, request: Mapping[str, Any], limiter: RateLimiter) -> dict[str, Any]:
    """Send one attempt of `operation`; tell the limiter how it went (throttled or not). Raises ApiError for the
    API's answers; anything else (the shared limiter's warehouse, a bug) propagates unchanged, never an outcome."""
    try:
        with paced(client, limiter, operation):
            response = getattr(client, snake_case(operation))(**request)
    except Exception as exc:
        if not is_api_failure(exc):
            raise
        error = classify(exc)
        if error.throttling:
            limiter.throttled()
        raise error from exc
    limiter.succeeded()
    return response


def pages(
    client: Any,
    operation: str,
    request: Mapping[str, Any],
    *,
    policy: RetryPolicy,
    limiter: RateLimiter | None = None,
) -> Iterator[dict[str, Any]]:
    """Every page of a List call, each one paced and retried on its own: a throttle or a dropped connection half way
    through a long listing retries that page, not the listing."""
    token: str | None = None
    while True:
        body = {**request, **({"nextToken": token} if token else {})}
        page = policy.call(lambda body=body: send_paced(client, operation, body, limiter or Unpaced()))
        yield page
        token = page.get("nextToken")
        if not token:
            return
