"""Sort every failure of a call into one clear, log-safe error: its AWS code, its message, whether to retry, and
whose problem it is.

Errors by scope: only an error about the request itself (its fields, the PMA's relationship quota, a conflict) is
the candidate's outcome. Credentials, signature, access, endpoint and sustained throttling are the account's or the
deployment's: no candidate is at fault, so the caller stops, leaves its candidates pending and says how to fix it.
"""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from include.partner_central import iam
from include.vocabulary import MODE_CREATE

# Final answers about the request: retrying it cannot change them. The 1,000-relationships-per-PMA quota is one.
PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "ResourceNotFoundException",
        "ServiceQuotaExceededException",
        "ConflictException",
    }
)
THROTTLING_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded"})

# The IAM actions a create-mode sync calls: what an AccessDenied's fix names (include.partner_central.iam has every
# mode's).
IAM_ACTIONS = tuple(iam.action(operation) for operation in iam.OPERATIONS[MODE_CREATE])
_CREDENTIALS_FIX = (
    "check the AWS connection's credentials (aws_conn_id): they are missing, expired or not valid for this "
    "account; refresh them (or the role the connection assumes) and re-run"
)
_CLOCK_FIX = (
    "the request's signature was refused, which almost always means the worker's clock is off by more than five "
    "minutes: check NTP/chrony on the worker hosts, then re-run"
)
_ACCESS_FIX = (
    "the AWS identity of the connection is not allowed to call Partner Central: grant it "
    + ", ".join(IAM_ACTIONS)
    + " and what its mode adds (`python -m include.partner_central.iam <mode>` prints each mode's policy), and make"
    " sure the account is enrolled in Partner Central, then re-run"
)
_ENDPOINT_FIX = (
    "the Partner Central endpoint could not be reached: check the connection's endpoint_url and region, DNS, "
    "proxies and egress rules; the next run sends these candidates"
)
_THROTTLE_FIX = (
    "the API kept throttling after every retry: another client shares this AWS account's quota, or rate_per_second "
    "is above the account's quota; lower partner_sync_rate_per_second or stop the other client"
)
# Error code → the fix to print, for the errors that are the account's or the deployment's, not a candidate's.
ACCOUNT_FIXES = {
    "AccessDeniedException": _ACCESS_FIX,
    "AccessDenied": _ACCESS_FIX,
    "UnrecognizedClientException": _CREDENTIALS_FIX,
    "InvalidClientTokenId": _CREDENTIALS_FIX,
    "ExpiredTokenException": _CREDENTIALS_FIX,
    "ExpiredToken": _CREDENTIALS_FIX,
    "IncompleteSignature": _CREDENTIALS_FIX,
    "MissingAuthenticationToken": _CREDENTIALS_FIX,
    "NoCredentialsError": _CREDENTIALS_FIX,
    "PartialCredentialsError": _CREDENTIALS_FIX,
    "CredentialRetrievalError": _CREDENTIALS_FIX,
    "TokenRetrievalError": _CREDENTIALS_FIX,
    "InvalidSignatureException": _CLOCK_FIX,
    "SignatureDoesNotMatch": _CLOCK_FIX,
    "RequestExpired": _CLOCK_FIX,
    "EndpointConnectionError": _ENDPOINT_FIX,
    "ConnectTimeoutError": _ENDPOINT_FIX,
    "ProxyConnectionError": _ENDPOINT_FIX,
    "SSLError": _ENDPOINT_FIX,
    "UnknownOperationException": _ENDPOINT_FIX,
}
# Of these, a later try may succeed without anyone's fix (a network blip, a busy quota).
TRANSIENT_ACCOUNT_CODES = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ProxyConnectionError"})


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

    @property
    def account_level(self) -> bool:
        """Not the candidate's fault: every other call of this account would fail the same way."""
        return self.code in ACCOUNT_FIXES

    @property
    def fix(self) -> str:
        return ACCOUNT_FIXES.get(self.code) or (_THROTTLE_FIX if self.throttling else "")


class AccountLevelError(Exception):
    """A call failed for a reason that is the account's or the deployment's: stop sending, name the cause and fix."""

    def __init__(self, error: ApiError, *, transient: bool):
        super().__init__(
            f"Partner Central refused the call for a reason that is no candidate's: {error}. Fix: {error.fix}"
        )
        self.error = error
        self.transient = transient


def stop_if_account_level(error: ApiError) -> None:
    """Raise AccountLevelError when the error is the account's (sustained throttling counts), not the candidate's."""
    if error.account_level or error.throttling:
        transient = error.throttling or error.code in TRANSIENT_ACCOUNT_CODES
        raise AccountLevelError(error, transient=transient) from error


def classify(exc: BaseException) -> ApiError:
    """An ApiError for a botocore failure. Anything else (a warehouse error raised inside the rate limiter, a bug) is
    not the API's answer and must not become one: callers let it propagate."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        return _client_error(exc)
    if isinstance(exc, (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)):
        # Timeouts, refused and dropped connections: retried; the ones refused before the request left (endpoint,
        # connect timeout) are then the deployment's problem (ACCOUNT_FIXES).
        return ApiError(type(exc).__name__, str(exc), retryable=True)
    return ApiError(type(exc).__name__, str(exc), retryable=False)


def is_api_failure(exc: BaseException) -> bool:
    """Whether an exception is the API's (or botocore's) answer, as opposed to this process's own failure."""
    return isinstance(exc, (ApiError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError))


def _client_error(exc: botocore.exceptions.ClientError) -> ApiError:
    error = exc.response.get("Error", {})
    code = error.get("Code") or "Unknown"
    message = error.get("Message") or str(exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    details = {key: value for key, value in exc.response.items() if key not in ("Error", "ResponseMetadata", "message")}
    fields = details.get("fieldList")
    if fields:
        message += " [" + "; ".join(f"{f.get('name')}: {f.get('message')}" for f in fields) + "]"
    if details.get("reason") and code in ("AccessDeniedException", "ValidationException"):
        message += f" (reason {details['reason']})"
    retryable = (
        code not in PERMANENT_CODES
        and code not in ACCOUNT_FIXES
        and (code in THROTTLING_CODES or status >= 500 or status == 0)
    )
    return ApiError(code, message, retryable=retryable, details=details)
