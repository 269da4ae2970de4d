"""Retries at one layer, tenacity's: exponential backoff with full jitter, bounded in attempts and in time.

botocore's own retries are turned off for this client (see the hook), so that attempts do not multiply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from include.partner_central.api_errors import ApiError, classify, is_api_failure

T = TypeVar("T")

# Each attempt's bounds unless the AWS connection's botocore config says otherwise (see the hook).
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    max_seconds: float = 120.0
    base_seconds: float = 0.5
    max_wait_seconds: float = 20.0

    def longest_call_seconds(self, attempt_seconds: float = CONNECT_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS) -> float:
        """The longest one call can take: every attempt timing out, with the backoff between them, or until the time
        budget stops it (an attempt started just before the budget ran out still runs to its timeout)."""
        by_attempts = self.max_attempts * attempt_seconds + (self.max_attempts - 1) * self.max_wait_seconds
        return min(by_attempts, self.max_seconds + attempt_seconds)

    def call(self, fn: Callable[[], T], on_retry: Callable[[ApiError, int, float], None] | None = None) -> T:
        """Run fn until it succeeds, fails for good, or the attempts or time run out; raise ApiError then. Exceptions
        that are not the API's answer are not retried and propagate unchanged."""

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None and state.next_action is not None:
                on_retry(classify(state.outcome.exception()), state.attempt_number, state.next_action.sleep)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts) | tenacity.stop_after_delay(self.max_seconds),
            wait=tenacity.wait_random_exponential(multiplier=self.base_seconds, max=self.max_wait_seconds),
            retry=tenacity.retry_if_exception(lambda exc: is_api_failure(exc) and classify(exc).retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except ApiError:
            raise
        except Exception as exc:
            if not is_api_failure(exc):
                raise  # not the API's answer (a warehouse error in the rate limiter, a bug): never an outcome
            raise classify(exc) from exc
