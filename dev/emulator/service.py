"""The emulated Partner Central Channel service: its state, semantics, quotas and injected faults, without HTTP.

Requests are validated against the installed botocore model (include.partner_central.validation), so the emulator
is exactly as strict as the model it is built from.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import Field, asdict, dataclass, field, fields
from functools import cache
from typing import Any

from include.partner_central.relationship_request import pma_id
from include.partner_central.service_model import service_model, snake_case
from include.partner_central.validation import FieldError, validate_request, validate_value

OPERATIONS = (
    "CreateRelationship",
    "GetRelationship",
    "ListRelationships",
    "UpdateRelationship",
    "DeleteRelationship",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "ListProgramManagementAccounts",
)
# Each write has its own quota per account (3/s documented for each); every other call shares the read quota.
WRITE_RATES = {
    "CreateRelationship": "create_rate",
    "UpdateRelationship": "update_rate",
    "DeleteRelationship": "delete_rate",
}
# Operations whose faults (internal errors, lost responses) are injected: the ones that change something.
# STS's GetCallerIdentity (AWS query protocol), answered for the same accounts: who a connection's credentials are.
CALLER_IDENTITY = "GetCallerIdentity"
FAULTED_OPERATIONS = frozenset({*WRITE_RATES, "TagResource", "UntagResource"})
PMA_STATUSES = ("PENDING", "ACTIVE", "INACTIVE")
ERROR_STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "ServiceQuotaExceededException": 402,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "UnknownOperationException": 400,
    # AWS's front door (authentication), answered for every service alike; not in the service's own model.
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "ExpiredTokenException": 403,
}
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass
class Settings:
    """What the emulator does; every field can be set at start (CLI) and at run time (POST /_emulator/config)."""

    create_rate: float = 3.0  # CreateRelationship requests per second per account (the documented quota)
    update_rate: float = 3.0  # UpdateRelationship requests per second per account
    delete_rate: float = 3.0  # DeleteRelationship requests per second per account
    read_rate: float = 5.0  # every other call (Get, List, tags, PMAs), per second per account
    burst: float | None = None  # token-bucket capacity; None: one second's worth of the rate
    max_relationships_per_pma: int = 1000
    latency_ms: float = 0.0  # added to every API call
    # Faults of the calls that change something (create, update, delete, tag, untag):
    internal_error_rate: float = 0.0  # share answered InternalServerException (before any change)
    lost_response_rate: float = 0.0  # share committed whose answer is then dropped
    fail_next_writes: int = 0  # the next N such calls answer InternalServerException
    lose_next_responses: int = 0  # the next N successful such calls are committed, then their answer dropped
    list_lag_seconds: float = 0.0  # a new relationship shows in ListRelationships only this long after its creation
    token_ttl_seconds: float | None = None  # how long a clientToken is remembered; None: for ever
    max_clock_skew_seconds: float = 300.0  # a request signed further than this from the service's clock is refused
    # Faults of AWS's front door, answered to every call before validation and throttling:
    access_denied_reason: str | None = None  # AccessDeniedException with this `reason`
    # Comma-separated operations the caller's IAM policy does not allow: AccessDeniedException for those only.
    denied_operations: str | None = None
    expired_token: bool = False  # ExpiredTokenException
    invalid_signature: bool = False  # InvalidSignatureException, as for a caller whose clock is off
    unrecognized_client: bool = False  # UnrecognizedClientException
    seed: int | None = None

    def __post_init__(self) -> None:
        self.update({f.name: getattr(self, f.name) for f in fields(self)})

    def update(self, values: dict[str, Any]) -> None:
        """Set the given fields, each converted to its declared type and checked; nothing is set if one is wrong."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown emulator setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        converted = {name: _converted(known[name], value) for name, value in values.items()}
        for name, value in converted.items():
            setattr(self, name, value)


_KINDS: dict[str, type] = {"float": float, "int": int, "str": str, "bool": bool}


def setting_kind(setting: Field[Any]) -> tuple[type, bool]:
    """A setting's base type and whether it may be None, read from its annotation (a string, as annotations are
    postponed here): the run-time configuration and the CLI both convert values by it."""
    parts = [part.strip() for part in str(setting.type).split("|")]
    return _KINDS[parts[0]], "None" in parts


def _converted(setting: Field[Any], value: Any) -> Any:
    kind, optional = setting_kind(setting)
    if value is None:
        if optional:
            return None
        raise ValueError(f"emulator setting {setting.name} cannot be null")
    if kind in (bool, str):
        if not isinstance(value, kind):
            raise ValueError(f"emulator setting {setting.name} must be a {kind.__name__}, not {value!r}")
    elif isinstance(value, bool):  # True is an int to Python, never a rate or a count here
        raise ValueError(f"emulator setting {setting.name} must be a number, not {value!r}")
    else:
        value = kind(value)
    if setting.name == "access_denied_reason":
        _check_access_denied_reason(value)
    if setting.name == "denied_operations":
        unknown = sorted(set(_operations(value)) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"emulator setting denied_operations names unknown operation(s) {', '.join(unknown)}")
    return value


def _operations(text: str | None) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _check_access_denied_reason(value: str) -> None:
    """The reason must be one the model allows for AccessDeniedException.reason (its enum, when it has one)."""
    shape = service_model().shape_for("AccessDeniedException").members["reason"]
    errors = [] if value else [FieldError("access_denied_reason", "TOO_SHORT", "access_denied_reason is empty")]
    errors += validate_value(shape, value, "access_denied_reason")
    if errors:
        allowed = f" (the model allows: {', '.join(shape.enum)})" if shape.enum else ""
        raise ValueError(
            "emulator setting " + "; ".join(error.message for error in errors) + allowed + "; null turns the fault off"
        )


class ApiFault(Exception):
    def __init__(self, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.code = code
        self.body = {"__type": code, "message": message, **extra}
        self.status = ERROR_STATUS[code]


class DropResponse(Exception):
    """The change is committed; the HTTP layer must close the connection without answering."""


class _TokenBucket:
    """AWS's throttling model: `rate` tokens a second, holding at most `burst` (default: one second's worth)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.tokens, self.stamp = burst, now

    def admit(self, rate: float, burst: float, now: float) -> bool:
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Relationship:
    detail: dict[str, Any]
    request: dict[str, Any]
    account: str
    client_token: str | None
    created: float  # on the emulator's clock: when ListRelationships may show it, when its token is forgotten
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    seq: int
    operation: str
    account: str
    client_token: str | None
    started: float
    ended: float = 0.0
    admitted: float | None = None  # when the rate limit let it through
    status: int = 0
    error_code: str | None = None
    relationship_id: str | None = None
    in_flight: int = 0
    dropped: bool = False
    request: dict[str, Any] = field(default_factory=dict)


class Emulator:
    def __init__(
        self, settings: Settings | None = None, region: str = "us-east-1", clock: Callable[[], float] = time.time
    ):
        self.settings = settings or Settings()
        self.region = region
        self.clock = clock  # the service's clock (epoch seconds), for list lag, token lifetime and signature age
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._random = random.Random(self.settings.seed)
            self.relationships: dict[str, Relationship] = {}
            self._by_token: dict[tuple[str, str], str] = {}
            # DeleteRelationship tokens already used: (account, token) → the relationship they deleted.
            self._deleted_by_token: dict[tuple[str, str], str] = {}
            # Program management accounts, per AWS account: the ones set up (set_program_management_account) and
            # the ones a create named, which count as ACTIVE.
            self.program_management_accounts: dict[tuple[str, str], dict[str, Any]] = {}
            self._buckets: dict[tuple[str, str], _TokenBucket] = {}
            self.calls: list[Call] = []
            self._in_flight = 0
            self.max_in_flight = 0

    def configure(self, values: dict[str, Any]) -> None:
        with self._lock:
            self.settings.update(values)
            if "seed" in values:
                self._random = random.Random(self.settings.seed)

    def handle(self, operation: str, params: Any, access_key: str, amz_date: str | None = None) -> dict[str, Any]:
        """Answer one API call: its response body, or ApiFault / DropResponse. `amz_date` is the request's signing
        time (X-Amz-Date), checked against the emulator's clock as AWS does."""
        account = account_id_for(access_key)
        token = params.get("clientToken") if isinstance(params, dict) else None
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            call = Call(
                len(self.calls) + 1,
                operation,
                account,
                token,
                time.time(),
                in_flight=self._in_flight,
                request=params if isinstance(params, dict) else {},
            )
            self.calls.append(call)
        try:
            if self.settings.latency_ms:
                time.sleep(self.settings.latency_ms / 1000)
            self._authenticate(account, amz_date)
            if operation == CALLER_IDENTITY:
                response = self._caller_identity(access_key, account)
            else:
                self._authorize(operation, account)
                response = self._dispatch(operation, params, account, call)
            call.status = 200
            call.relationship_id = (response.get("relationshipDetail") or {}).get("id")
            return response
        except ApiFault as fault:
            call.status, call.error_code = fault.status, fault.code
            raise
        except DropResponse as dropped:
            call.status, call.dropped = 200, True
            call.relationship_id = str(dropped)
            raise
        finally:
            with self._lock:
                self._in_flight -= 1
                call.ended = time.time()

    def _authenticate(self, account: str, amz_date: str | None) -> None:
        """AWS's front door: who is calling, whether the signature holds and is fresh."""
        settings = self.settings
        if settings.unrecognized_client:
            raise ApiFault("UnrecognizedClientException", "The security token included in the request is invalid.")
        now = self.clock()
        signed = _signing_time(amz_date) if amz_date else now
        skew = settings.max_clock_skew_seconds
        if settings.invalid_signature:
            now = signed + skew + 300  # answered as if the caller's clock were behind by more than the skew
        if signed < now - skew:
            raise ApiFault(
                "InvalidSignatureException",
                f"Signature expired: {_stamp(signed)} is now earlier than {_stamp(now - skew)} "
                f"({_stamp(now)} - {_duration(skew)})",
            )
        if signed > now + skew:
            raise ApiFault(
                "InvalidSignatureException",
                f"Signature not yet current: {_stamp(signed)} is still later than {_stamp(now + skew)} "
                f"({_stamp(now)} + {_duration(skew)})",
            )
        if settings.expired_token:
            raise ApiFault("ExpiredTokenException", "The security token included in the request is expired")

    def _authorize(self, operation: str, account: str) -> None:
        """Whether the caller's IAM policy allows the operation."""
        settings = self.settings
        if settings.access_denied_reason is not None or operation in _operations(settings.denied_operations):
            raise ApiFault(
                "AccessDeniedException",
                f"User: arn:aws:iam::{account}:user/emulated is not authorized to perform: partnercentral:{operation}",
                reason=settings.access_denied_reason or "ACCESS_DENIED",
            )

    @staticmethod
    def _caller_identity(access_key: str, account: str) -> dict[str, Any]:
        """STS GetCallerIdentity, which needs no permission: the account and identity an access key stands for."""
        return {"Account": account, "Arn": f"arn:aws:iam::{account}:user/emulated", "UserId": access_key}

    def _dispatch(self, operation: str, params: Any, account: str, call: Call) -> dict[str, Any]:
        if operation not in OPERATIONS:
            raise ApiFault("UnknownOperationException", f"operation {operation} is not emulated")
        errors = validate_request(params, operation)
        token = params.get("nextToken") if operation.startswith("List") and not errors else None
        if token is not None and _page_start(token) is None:
            errors.append(FieldError("nextToken", "INVALID_VALUE", "nextToken is not a token this service issued"))
        if errors:
            raise ApiFault(
                "ValidationException",
                "; ".join(error.message for error in errors),
                reason="REQUEST_VALIDATION_FAILED",
                fieldList=[error.as_api_field() for error in errors],
            )
        self._throttle(operation, account, call)
        if operation in FAULTED_OPERATIONS and self._injected_failure():
            raise ApiFault("InternalServerException", "Injected fault: internal error")
        handler = getattr(self, "_" + snake_case(operation))
        response = handler(params, account)
        if operation in FAULTED_OPERATIONS and self._lose_response():
            named = params.get("identifier") or params.get("resourceArn") or ""
            raise DropResponse((response.get("relationshipDetail") or {}).get("id") or named.rsplit("/", 1)[-1])
        return response

    def _throttle(self, operation: str, account: str, call: Call) -> None:
        setting = WRITE_RATES.get(operation, "read_rate")
        rate = getattr(self.settings, setting)
        burst = max(1.0, self.settings.burst if self.settings.burst is not None else rate)
        with self._lock:
            now = time.time()
            bucket = self._buckets.setdefault((account, setting), _TokenBucket(rate, burst, now))
            allowed = bucket.admit(rate, burst, now)
        if allowed:
            call.admitted = now
        else:
            raise ApiFault(
                "ThrottlingException",
                f"Rate exceeded: {operation} allows {rate:g} requests per second per account",
                serviceCode="partnercentral-channel",
                quotaCode=f"L-{setting.upper().replace('_', '-')}",
            )

    def _injected_failure(self) -> bool:
        with self._lock:
            if self.settings.fail_next_writes > 0:
                self.settings.fail_next_writes -= 1
                return True
            return self._random.random() < self.settings.internal_error_rate

    def _lose_response(self) -> bool:
        with self._lock:
            if self.settings.lose_next_responses > 0:
                self.settings.lose_next_responses -= 1
                return True
            return self._random.random() < self.settings.lost_response_rate

    def _create_relationship(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        token = params.get("clientToken")
        pma = pma_id(params["programManagementAccountIdentifier"])
        with self._lock:
            if token and self._remembered(account, token):
                existing = self.relationships[self._by_token[(account, token)]]
                if _fingerprint(existing.request) != _fingerprint(params):
                    raise ApiFault(
                        "ConflictException",
                        "The client token was already used with different parameters",
                        resourceId=existing.detail["id"],
                        resourceType="Relationship",
                    )
                relationship = existing
            else:
                relationship = self._new_relationship(params, account, pma, token)
        return {"relationshipDetail": {"arn": relationship.detail["arn"], "id": relationship.detail["id"]}}

    def _remembered(self, account: str, token: str) -> bool:
        """Whether the service still knows this clientToken: for `token_ttl_seconds` after its relationship was
        created, after which the same request is a new one (and a duplicate of what it created)."""
        rid = self._by_token.get((account, token))
        if rid is None or rid not in self.relationships:  # a deleted relationship's token names nothing any more
            return False
        ttl = self.settings.token_ttl_seconds
        return ttl is None or self.clock() - self.relationships[rid].created <= ttl

    def _new_relationship(self, params: dict[str, Any], account: str, pma: str, token: str | None) -> Relationship:
        identity = _identity(params)
        if identity[2]:
            for existing in self.relationships.values():
                if existing.account == account and _identity(existing.request) == identity:
                    raise ApiFault(
                        "ConflictException",
                        f"A {params['associationType']} relationship with account {params['associatedAccountId']} "
                        f"already exists in {pma}",
                        resourceId=existing.detail["id"],
                        resourceType="Relationship",
                    )
        status = self._program_management_account(account, pma, params["catalog"])["status"]
        if status != "ACTIVE":
            raise ApiFault(
                "ValidationException",
                f"Program management account {pma} is {status}: relationships can only be created in an ACTIVE one",
                reason="BUSINESS_VALIDATION_FAILED",
                fieldList=[
                    {
                        "name": "programManagementAccountIdentifier",
                        "code": "INVALID_VALUE",
                        "message": f"program management account {pma} is {status}",
                    }
                ],
            )
        in_pma = sum(
            1
            for r in self.relationships.values()
            if r.account == account and r.detail["programManagementAccountId"] == pma
        )
        if in_pma >= self.settings.max_relationships_per_pma:
            raise ApiFault(
                "ServiceQuotaExceededException",
                f"Program management account {pma} already has {in_pma} relationships, the most allowed",
                resourceId=pma,
                resourceType="ProgramManagementAccount",
                quotaCode="L-RELATIONSHIPS-PER-PMA",
            )
        rid = "rs-" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(13))
        now = _iso_now()
        detail = {
            "arn": f"arn:aws:partnercentral:{self.region}:{account}:catalog/{params['catalog']}"
            f"/program-management-account/{pma}/relationship/{rid}",
            "id": rid,
            "revision": "1",
            "catalog": params["catalog"],
            "associationType": params["associationType"],
            "programManagementAccountId": pma,
            "associatedAccountId": params.get("associatedAccountId"),
            "displayName": params["displayName"],
            "resaleAccountModel": params.get("resaleAccountModel"),
            "sector": params["sector"],
            "accountScope": params.get("accountScope"),
            "createdAt": now,
            "updatedAt": now,
            "startDate": params.get("startDate"),
        }
        relationship = Relationship(
            {k: v for k, v in detail.items() if v is not None},
            dict(params),
            account,
            token,
            self.clock(),
            tags={tag["key"]: tag["value"] for tag in params.get("tags") or []},
        )
        self.relationships[rid] = relationship
        if token:
            self._by_token[(account, token)] = rid
        return relationship

    def _relationship(self, params: dict[str, Any], account: str) -> Relationship:
        """The relationship a Get, Update or Delete names (id or ARN, in its catalog and PMA), or not found."""
        rid = params["identifier"].rsplit("/", 1)[-1]
        relationship = self.relationships.get(rid)
        if (
            relationship is None
            or relationship.account != account
            or relationship.detail["programManagementAccountId"] != pma_id(params["programManagementAccountIdentifier"])
            or relationship.detail["catalog"] != params["catalog"]
        ):
            raise _not_found(rid)
        return relationship

    def _get_relationship(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        with self._lock:
            return {"relationshipDetail": dict(self._relationship(params, account).detail)}

    def _update_relationship(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        """Display name and support plan change in place; a given revision must be the current one (the guard
        against lost updates), and every update advances it."""
        with self._lock:
            relationship = self._relationship(params, account)
            detail = relationship.detail
            if params.get("revision") is not None and params["revision"] != detail["revision"]:
                raise ApiFault(
                    "ConflictException",
                    f"Relationship {detail['id']} is at revision {detail['revision']}, not {params['revision']}",
                    resourceId=detail["id"],
                    resourceType="Relationship",
                )
            for member in ("displayName", "requestedSupportPlan"):
                if member in params:
                    relationship.request[member] = params[member]
            if "displayName" in params:
                detail["displayName"] = params["displayName"]
            detail["revision"] = str(int(detail["revision"]) + 1)
            detail["updatedAt"] = _iso_now()
            return {"relationshipDetail": dict(detail)}

    def _delete_relationship(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        """Idempotent by clientToken: the same token deletes once and answers {} again after; a relationship that
        is gone answers ResourceNotFoundException to a delete with another token (or none)."""
        token = params.get("clientToken")
        rid = params["identifier"].rsplit("/", 1)[-1]
        with self._lock:
            if token and self._deleted_by_token.get((account, token)) == rid:
                return {}
            relationship = self._relationship(params, account)
            del self.relationships[rid]
            if relationship.client_token:
                self._by_token.pop((account, relationship.client_token), None)
            if token:
                self._deleted_by_token[(account, token)] = rid
        return {}

    def _tagged(self, params: dict[str, Any], account: str) -> Relationship:
        """The relationship a tag call's ARN names (this emulator tags relationships only)."""
        rid = params["resourceArn"].rsplit("/", 1)[-1]
        relationship = self.relationships.get(rid)
        if (
            relationship is None
            or relationship.account != account
            or relationship.detail["arn"] != params["resourceArn"]
        ):
            raise _not_found(params["resourceArn"])
        return relationship

    def _tag_resource(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        with self._lock:
            self._tagged(params, account).tags.update({tag["key"]: tag["value"] for tag in params["tags"]})
        return {}

    def _untag_resource(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        with self._lock:
            tags = self._tagged(params, account).tags
            for key in params["tagKeys"]:
                tags.pop(key, None)
        return {}

    def _list_tags_for_resource(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        with self._lock:
            tags = self._tagged(params, account).tags
            return {"tags": [{"key": key, "value": value} for key, value in sorted(tags.items())]}

    def _program_management_account(self, account: str, pma: str, catalog: str) -> dict[str, Any]:
        """A PMA's summary; one never set up counts as ACTIVE from its first use (the emulator's default)."""
        key = (account, pma)
        if key not in self.program_management_accounts:
            self.set_program_management_account(account, pma, catalog=catalog)
        return self.program_management_accounts[key]

    def set_program_management_account(
        self, account: str, pma: str, *, catalog: str = "Sandbox", status: str = "ACTIVE", **summary: Any
    ) -> dict[str, Any]:
        """Set up (or change) one PMA of an AWS account; the fields beyond id, catalog and status take defaults."""
        if status not in PMA_STATUSES:
            raise ValueError(f"status must be one of {', '.join(PMA_STATUSES)}, not {status!r}")
        unknown = set(summary) - _pma_fields()
        if unknown:
            raise ValueError(f"unknown program management account field(s) {', '.join(sorted(unknown))}")
        with self._lock:
            now = _iso_now()
            current = self.program_management_accounts.get((account, pma)) or {
                "id": pma,
                "arn": f"arn:aws:partnercentral:{self.region}:{account}:catalog/{catalog}"
                f"/program-management-account/{pma}",
                "revision": "0",
                "catalog": catalog,
                "program": "SOLUTION_PROVIDER",
                "displayName": pma[-13:],
                "accountId": account,
                "createdAt": now,
                "type": "RESALE_BILLING_TRANSFER",
            }
            current.update(summary, status=status, updatedAt=now, revision=str(int(current["revision"]) + 1))
            self.program_management_accounts[(account, pma)] = current
            return dict(current)

    def _list_program_management_accounts(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        filters = {
            "displayName": set(params.get("displayNames") or []),
            "program": set(params.get("programs") or []),
            "accountId": set(params.get("accountIds") or []),
            "status": set(params.get("statuses") or []),
            "type": {params["type"]} if params.get("type") else set(),
        }
        with self._lock:
            items = [
                dict(summary)
                for (owner, _), summary in self.program_management_accounts.items()
                if owner == account
                and summary["catalog"] == params["catalog"]
                and all(not wanted or summary.get(key) in wanted for key, wanted in filters.items())
            ]
        return _page(items, params)

    def _list_relationships(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        filters = {
            "associatedAccountId": set(params.get("associatedAccountIds") or []),
            "associationType": set(params.get("associationTypes") or []),
            "displayName": set(params.get("displayNames") or []),
            "programManagementAccountId": {pma_id(p) for p in params.get("programManagementAccountIdentifiers") or []},
        }
        visible_before = self.clock() - self.settings.list_lag_seconds
        with self._lock:
            items = [
                r.detail
                for r in self.relationships.values()
                if r.created <= visible_before
                and r.account == account
                and r.detail["catalog"] == params["catalog"]
                and all(not wanted or r.detail.get(key) in wanted for key, wanted in filters.items())
            ]
        summary_fields = _summary_fields()
        return _page([{k: v for k, v in d.items() if k in summary_fields} for d in items], params)

    def call_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(call) for call in self.calls]

    def relationship_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r.detail, clientToken=r.client_token, tags=dict(r.tags)) for r in self.relationships.values()]

    def program_management_account_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(summary) for summary in self.program_management_accounts.values()]


def _not_found(resource: str) -> ApiFault:
    return ApiFault(
        "ResourceNotFoundException",
        f"Resource {resource} was not found",
        resourceId=resource,
        resourceType="Relationship",
    )


def _page(items: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """One page of a List call: sorted by updatedAt (then id) as `sort` asks, from the offset its nextToken stands for
    (a foreign token was refused in _dispatch), `maxResults` long."""
    sort = params.get("sort")
    items.sort(key=lambda d: (d["updatedAt"], d["id"]), reverse=bool(sort and sort.get("sortOrder") == "Descending"))
    token = params.get("nextToken")
    start = (_page_start(token) or 0) if token is not None else 0
    size = params.get("maxResults") or 50
    response: dict[str, Any] = {"items": items[start : start + size]}
    if start + size < len(items):
        response["nextToken"] = _page_token(start + size)
    return response


@cache
def _pma_fields() -> frozenset[str]:
    """The members ListProgramManagementAccounts returns per item, from the model."""
    shape = service_model().operation_model("ListProgramManagementAccounts").output_shape
    return frozenset(shape.members["items"].member.members)


@cache
def _summary_fields() -> frozenset[str]:
    """The members ListRelationships returns per item, from the model."""
    shape = service_model().operation_model("ListRelationships").output_shape
    return frozenset(shape.members["items"].member.members)


def account_id_for(access_key: str) -> str:
    """Each access key stands for one AWS account, with a stable 12-digit id."""
    return str(int(hashlib.sha256(access_key.encode()).hexdigest(), 16))[:12].rjust(12, "0")


def _identity(params: dict[str, Any]) -> tuple[str, str, str | None, str]:
    return (
        params["catalog"],
        pma_id(params["programManagementAccountIdentifier"]),
        params.get("associatedAccountId"),
        params["associationType"],
    )


def _fingerprint(params: dict[str, Any]) -> str:
    """The request without its token and with the PMA normalised: what 'the same parameters' means."""
    normalised = {k: v for k, v in params.items() if k != "clientToken"}
    normalised["programManagementAccountIdentifier"] = pma_id(params["programManagementAccountIdentifier"])
    return json.dumps(normalised, sort_keys=True)


def _page_token(offset: int) -> str:
    """An opaque nextToken, as the service issues: callers must hand it back as they got it."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _page_start(token: str) -> int | None:
    """The offset a nextToken this emulator issued stands for; None for any other string."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except ValueError:  # not base64, not JSON, not ASCII
        return None
    offset = decoded.get("offset") if isinstance(decoded, dict) and len(decoded) == 1 else None
    if type(offset) is not int or offset < 0 or _page_token(offset) != token:
        return None
    return offset


def _signing_time(amz_date: str) -> float:
    try:
        return dt.datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        raise ApiFault(
            "InvalidSignatureException",
            f"X-Amz-Date {amz_date!r} is not in ISO 8601 basic format (yyyyMMdd'T'HHmmss'Z')",
        ) from None


def _stamp(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc).strftime(SIGV4_TIMESTAMP)


def _duration(seconds: float) -> str:
    """As AWS words the allowed skew in its messages: '5 min.'."""
    return f"{seconds / 60:g} min." if seconds % 60 == 0 else f"{seconds:g} sec."


def _iso_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def max_in_any_second(times: list[float]) -> int:
    """The most calls (by their times) that fall in any half-open one-second window: how the call log shows
    whether a caller kept to a rate."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] >= 1:
            first += 1
        most = max(most, last - first + 1)
    return most
