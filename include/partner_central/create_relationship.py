"""Create one relationship exactly once: deterministic token, rate limit, one retry layer, conflict look-up.

The operator and the sync's batch task both call it through PartnerCentralChannelHook.create_relationship (with the
hook's client: no botocore retries, bounded timeouts), so they share one code path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from include.partner_central.api_errors import ApiError
from include.partner_central.paced_call import retry_logger, send_paced
from include.partner_central.rate_limit import RateLimiter
from include.partner_central.relationship_request import describe, pma_id
from include.partner_central.retry_policy import RetryPolicy
from include.vocabulary import ALREADY_EXISTS, CREATED

log = logging.getLogger(__name__)
DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class CreateResult:
    status: str
    relationship_id: str
    relationship_arn: str
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def create_relationship(
    client: Any,
    request: Mapping[str, Any],
    *,
    limiter: RateLimiter,
    policy: RetryPolicy = DEFAULT_POLICY,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> CreateResult:
    """Send CreateRelationship; on ConflictException return the existing relationship as `already_exists`.

    Raises ApiError (one line, code and message, `retryable` set) when the relationship can be neither created
    nor found.
    """
    if not request.get("clientToken"):
        raise ValueError("a clientToken is required: without one botocore invents a random token per call")
    name = describe(request)

    def send() -> dict[str, Any]:
        return send_paced(client, "CreateRelationship", request, limiter)

    on_retry = retry_logger(logger, "CreateRelationship", name)

    attempts = 0

    def counted_send() -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        return send()

    try:
        detail = policy.call(counted_send, on_retry)["relationshipDetail"]
    except ApiError as error:
        error.attempts = attempts
        if error.code != "ConflictException":
            logger.error("CreateRelationship %s failed after %d attempt(s): %s", name, error.attempts, error)
            raise
        existing = find_relationship(client, request, policy)
        if existing is None:
            logger.error("CreateRelationship %s: %s, and no such relationship was found", name, error)
            unresolved = ApiError(
                error.code,
                f"{error.message} (conflicting {error.details.get('resourceType', 'resource')} "
                f"{error.details.get('resourceId', 'unknown')}; no relationship {name} was found by "
                "ListRelationships yet)",
                # The look-up may lag behind a create that did happen: a later try can still find it (within the
                # candidate's retry budget; past it the candidate is dead-lettered, not retried forever).
                retryable=True,
                details=error.details,
            )
            unresolved.attempts = attempts
            raise unresolved from error
        logger.info("CreateRelationship %s: already exists as %s", name, existing["id"])
        return CreateResult(ALREADY_EXISTS, existing["id"], existing["arn"], attempts)
    logger.info("CreateRelationship %s: created %s", name, detail["id"])
    return CreateResult(CREATED, detail["id"], detail["arn"], attempts)


def find_relationship(
    client: Any, request: Mapping[str, Any], policy: RetryPolicy = DEFAULT_POLICY
) -> dict[str, Any] | None:
    """The existing relationship with the request's identity (catalog, PMA, associated account, type), if any."""
    pma = pma_id(request["programManagementAccountIdentifier"])
    filters: dict[str, Any] = {
        "catalog": request["catalog"],
        "programManagementAccountIdentifiers": [request["programManagementAccountIdentifier"]],
        "associationTypes": [request["associationType"]],
    }
    if request.get("associatedAccountId"):
        filters["associatedAccountIds"] = [request["associatedAccountId"]]
    else:
        filters["displayNames"] = [request["displayName"]]

    def matches(item: Mapping[str, Any]) -> bool:
        return (
            item.get("programManagementAccountId") == pma
            and item.get("associationType") == request["associationType"]
            and item.get("associatedAccountId") == request.get("associatedAccountId")
        )

    def search() -> dict[str, Any] | None:
        return next((item for item in relationships(client, filters) if matches(item)), None)

    return policy.call(search)


def relationships(client: Any, filters: Mapping[str, Any], page_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Every relationship ListRelationships returns for the filters, page after page (the model's paginator)."""
    pagination = {"PaginationConfig": {"PageSize": page_size}} if page_size else {}
    for page in client.get_paginator("list_relationships").paginate(**filters, **pagination):
        yield from page.get("items", [])
