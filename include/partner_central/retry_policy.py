"""Retries at one layer, tenacity's: exponential backoff with full jitter, bounded in attempts and in time.

botocore's own retries are turned off for this client (see the hook), so that attempts do not multiply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from include.partner_central.api_errors import ApiError, classify

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    max_seconds: float = 120.0
    base_seconds: float = 0.5
    max_wait_seconds: float = 20.0

    def call(self, fn: Callable[[], T], on_retry: Callable[[ApiError, int, float], None] | None = None) -> T:
        """Run fn until it succeeds, fails for good, or the attempts or time run out; raise ApiError then."""

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None and state.next_action is not None:
                on_retry(classify(state.outcome.exception()), state.attempt_number, state.next_action.sleep)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts) | tenacity.stop_after_delay(self.max_seconds),
            wait=tenacity.wait_random_exponential(multiplier=self.base_seconds, max=self.max_wait_seconds),
            retry=tenacity.retry_if_exception(lambda exc: classify(exc).retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except ApiError:
            raise
        except Exception as exc:
            raise classify(exc) from exc
