"""Update and delete one relationship exactly once, as create does: paced, one retry layer, and every ambiguous
answer (a lost response, a conflict) resolved by reading the relationship back rather than by sending blindly.

- UpdateRelationship is guarded by the relationship's `revision`. A ConflictException means the revision moved: the
  relationship is read again; if it already shows this update (our own attempt whose answer was lost), that is the
  outcome, else the update is sent once more at the new revision (another writer's change in between).
- DeleteRelationship carries a deterministic clientToken (botocore would invent a random one), so a retry after a
  lost response is the same delete; a relationship that is already gone is `already_deleted`, not an error.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from include.partner_central.api_errors import ApiError
from include.partner_central.paced_call import retry_logger, send_paced
from include.partner_central.rate_limit import RateLimiter
from include.partner_central.relationship_request import TOKEN_PREFIX
from include.partner_central.retry_policy import RetryPolicy
from include.vocabulary import ALREADY_DELETED, ALREADY_UPDATED, DELETED, UPDATABLE_FIELDS, UPDATED

log = logging.getLogger(__name__)
DEFAULT_POLICY = RetryPolicy()
# Of those, what GetRelationship shows back: how a re-read tells whether an update is already there.
READABLE_FIELDS = ("displayName",)


@dataclass(frozen=True)
class ChangeResult:
    status: str
    relationship_id: str
    revision: str | None
    attempts: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def delete_token_for(relationship_id: str) -> str:
    """The same relationship's delete always carries the same token: retries and re-runs delete it once."""
    return TOKEN_PREFIX + "del-" + hashlib.sha256(relationship_id.encode()).hexdigest()[:54]


def relationship_id_of(identifier: str) -> str:
    return identifier.rsplit("/", 1)[-1]


class _Attempts:
    """Counts the attempts of one logical call, across the re-sends a conflict leads to."""

    def __init__(self, client: Any, operation: str, limiter: RateLimiter) -> None:
        self.client, self.operation, self.limiter = client, operation, limiter
        self.count = 0

    def send(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.count += 1
        return send_paced(self.client, self.operation, request, self.limiter)


def update_relationship(
    client: Any,
    request: Mapping[str, Any],
    *,
    limiter: RateLimiter,
    policy: RetryPolicy = DEFAULT_POLICY,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> ChangeResult:
    """Send UpdateRelationship with the request's `revision` (when given); on a revision conflict, read the
    relationship, and either return it as `already_updated` or send once more at its current revision."""
    if not any(field in request for field in UPDATABLE_FIELDS):
        raise ValueError(f"an update must change at least one of {', '.join(UPDATABLE_FIELDS)}")
    rid = relationship_id_of(request["identifier"])
    attempts = _Attempts(client, "UpdateRelationship", limiter)

    on_retry = retry_logger(logger, "UpdateRelationship", rid)

    def send(body: Mapping[str, Any]) -> dict[str, Any]:
        return policy.call(lambda: attempts.send(body), on_retry)["relationshipDetail"]

    try:
        detail = send(request)
    except ApiError as error:
        error.attempts = attempts.count
        if error.code != "ConflictException" or "revision" not in request:
            logger.error("UpdateRelationship %s failed after %d attempt(s): %s", rid, attempts.count, error)
            raise
        current = policy.call(lambda: client.get_relationship(**_get_request(request))["relationshipDetail"])
        if attempts.count > 1 and _shows(current, request) and int(current["revision"]) == int(request["revision"]) + 1:
            # The only change since our revision is one that looks like ours: an attempt whose answer was lost.
            logger.info("UpdateRelationship %s: already updated (revision %s)", rid, current["revision"])
            return ChangeResult(ALREADY_UPDATED, rid, current["revision"], attempts.count)
        logger.warning(
            "UpdateRelationship %s: revision %s is stale (now %s); sending once more at the current revision",
            rid,
            request["revision"],
            current["revision"],
        )
        try:
            detail = send({**request, "revision": current["revision"]})
        except ApiError as again:
            again.attempts = attempts.count
            logger.error("UpdateRelationship %s failed after %d attempt(s): %s", rid, attempts.count, again)
            raise
    logger.info("UpdateRelationship %s: updated (revision %s)", rid, detail.get("revision"))
    return ChangeResult(UPDATED, rid, detail.get("revision"), attempts.count)


def delete_relationship(
    client: Any,
    request: Mapping[str, Any],
    *,
    limiter: RateLimiter,
    policy: RetryPolicy = DEFAULT_POLICY,
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> ChangeResult:
    """Send DeleteRelationship with its clientToken (derived from the relationship when not given); a relationship
    that is not found is `already_deleted`."""
    rid = relationship_id_of(request["identifier"])
    body = {**request, "clientToken": request.get("clientToken") or delete_token_for(rid)}
    attempts = _Attempts(client, "DeleteRelationship", limiter)

    on_retry = retry_logger(logger, "DeleteRelationship", rid)

    try:
        policy.call(lambda: attempts.send(body), on_retry)
    except ApiError as error:
        error.attempts = attempts.count
        if error.code == "ResourceNotFoundException":
            logger.info("DeleteRelationship %s: already deleted", rid)
            return ChangeResult(ALREADY_DELETED, rid, None, attempts.count)
        logger.error("DeleteRelationship %s failed after %d attempt(s): %s", rid, attempts.count, error)
        raise
    logger.info("DeleteRelationship %s: deleted", rid)
    return ChangeResult(DELETED, rid, None, attempts.count)


def _get_request(request: Mapping[str, Any]) -> dict[str, Any]:
    return {name: request[name] for name in ("catalog", "programManagementAccountIdentifier", "identifier")}


def _shows(detail: Mapping[str, Any], request: Mapping[str, Any]) -> bool:
    """Whether a relationship read back shows the update's readable fields."""
    return all(detail.get(name) == request[name] for name in READABLE_FIELDS if name in request)
