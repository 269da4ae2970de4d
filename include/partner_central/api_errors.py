"""Sort every failure of a call into one clear, log-safe error: its AWS code, its message, and whether to retry."""

from __future__ import annotations

from typing import Any

import botocore.exceptions

# Final answers: retrying cannot change them. The 1,000-relationships-per-PMA quota is one of them.
PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "AccessDeniedException",
        "ResourceNotFoundException",
        "ServiceQuotaExceededException",
        "ConflictException",
    }
)
THROTTLING_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded"})


class ApiError(Exception):
    """One line: `Code: message`, never the request's token or credentials."""

    def __init__(self, code: str, message: str, *, retryable: bool, details: dict[str, Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details = details or {}
        self.attempts = 0

    @property
    def throttling(self) -> bool:
        return self.code in THROTTLING_CODES


def classify(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        return _client_error(exc)
    if isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
        # Timeouts, refused and dropped connections: the request may or may not have reached the service.
        return ApiError(type(exc).__name__, str(exc), retryable=True)
    return ApiError(type(exc).__name__, str(exc), retryable=False)


def _client_error(exc: botocore.exceptions.ClientError) -> ApiError:
    error = exc.response.get("Error", {})
    code = error.get("Code") or "Unknown"
    message = error.get("Message") or str(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    details = {key: value for key, value in exc.response.items() if key not in ("Error", "ResponseMetadata", "message")}
    fields = details.get("fieldList")
    if fields:
        message += " [" + "; ".join(f"{f.get('name')}: {f.get('message')}" for f in fields) + "]"
    retryable = code not in PERMANENT_CODES and (code in THROTTLING_CODES or status >= 500 or status == 0)
    return ApiError(code, message, retryable=retryable, details=details)
