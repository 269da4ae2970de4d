"""The emulated Partner Central Channel service: its state, semantics, quotas and injected faults, without HTTP.

Requests are validated against the installed botocore model (include.partner_central.validation), so the emulator
is exactly as strict as the model it is built from.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import secrets
import string
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from typing import Any

from include.partner_central.relationship_request import pma_id
from include.partner_central.service_model import service_model
from include.partner_central.validation import validate_request

OPERATIONS = ("CreateRelationship", "GetRelationship", "ListRelationships")
WRITE_OPERATIONS = frozenset({"CreateRelationship"})
ERROR_STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "ServiceQuotaExceededException": 402,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "UnknownOperationException": 400,
}


@dataclass
class Settings:
    """What the emulator does; every field can be set at start (CLI) and at run time (POST /_emulator/config)."""

    create_rate: float = 3.0  # CreateRelationship requests per second per account (the documented quota)
    read_rate: float = 5.0  # GetRelationship and ListRelationships requests per second per account
    burst: float | None = None  # token-bucket capacity; None: one second's worth of the rate
    max_relationships_per_pma: int = 1000
    latency_ms: float = 0.0  # added to every API call
    internal_error_rate: float = 0.0  # share of creates answered InternalServerException (before any change)
    lost_response_rate: float = 0.0  # share of creates committed whose answer is then dropped
    fail_next_creates: int = 0  # the next N creates answer InternalServerException
    lose_next_responses: int = 0  # the next N successful creates are committed, then their answer dropped
    seed: int | None = None

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown emulator setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        for name, value in values.items():
            current = getattr(self, name)
            setattr(self, name, value if value is None or current is None else type(current)(value))


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
    def __init__(self, settings: Settings | None = None, region: str = "us-east-1"):
        self.settings = settings or Settings()
        self.region = region
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._random = random.Random(self.settings.seed)
            self.relationships: dict[str, Relationship] = {}
            self._by_token: dict[tuple[str, str], str] = {}
            self._buckets: dict[tuple[str, str], _TokenBucket] = {}
            self.calls: list[Call] = []
            self._in_flight = 0
            self.max_in_flight = 0

    def configure(self, values: dict[str, Any]) -> None:
        with self._lock:
            self.settings.update(values)
            if "seed" in values:
                self._random = random.Random(self.settings.seed)

    def handle(self, operation: str, params: Any, access_key: str) -> dict[str, Any]:
        """Answer one API call: its response body, or ApiFault / DropResponse."""
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

    def _dispatch(self, operation: str, params: Any, account: str, call: Call) -> dict[str, Any]:
        if operation not in OPERATIONS:
            raise ApiFault("UnknownOperationException", f"operation {operation} is not emulated")
        errors = validate_request(params, operation)
        if errors:
            raise ApiFault(
                "ValidationException",
                "; ".join(error.message for error in errors),
                reason="REQUEST_VALIDATION_FAILED",
                fieldList=[error.as_api_field() for error in errors],
            )
        self._throttle(operation, account, call)
        if operation == "CreateRelationship":
            return self._create(params, account)
        if operation == "GetRelationship":
            return self._get(params, account)
        return self._list(params, account)

    def _throttle(self, operation: str, account: str, call: Call) -> None:
        kind = "write" if operation in WRITE_OPERATIONS else "read"
        rate = self.settings.create_rate if kind == "write" else self.settings.read_rate
        burst = max(1.0, self.settings.burst if self.settings.burst is not None else rate)
        with self._lock:
            now = time.time()
            bucket = self._buckets.setdefault((account, kind), _TokenBucket(rate, burst, now))
            allowed = bucket.admit(rate, burst, now)
        if allowed:
            call.admitted = now
        else:
            raise ApiFault(
                "ThrottlingException",
                f"Rate exceeded: {operation} allows {rate:g} requests per second per account",
                serviceCode="partnercentral-channel",
                quotaCode="L-CREATE-RELATIONSHIP-TPS" if kind == "write" else "L-READ-RELATIONSHIP-TPS",
            )

    def _injected_failure(self) -> bool:
        with self._lock:
            if self.settings.fail_next_creates > 0:
                self.settings.fail_next_creates -= 1
                return True
            return self._random.random() < self.settings.internal_error_rate

    def _lose_response(self) -> bool:
        with self._lock:
            if self.settings.lose_next_responses > 0:
                self.settings.lose_next_responses -= 1
                return True
            return self._random.random() < self.settings.lost_response_rate

    def _create(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        if self._injected_failure():
            raise ApiFault("InternalServerException", "Injected fault: internal error")
        token = params.get("clientToken")
        pma = pma_id(params["programManagementAccountIdentifier"])
        with self._lock:
            if token and (account, token) in self._by_token:
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
        response = {"relationshipDetail": {"arn": relationship.detail["arn"], "id": relationship.detail["id"]}}
        if self._lose_response():
            raise DropResponse(relationship.detail["id"])
        return response

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
        relationship = Relationship({k: v for k, v in detail.items() if v is not None}, dict(params), account, token)
        self.relationships[rid] = relationship
        if token:
            self._by_token[(account, token)] = rid
        return relationship

    def _get(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        rid = params["identifier"].rsplit("/", 1)[-1]
        with self._lock:
            relationship = self.relationships.get(rid)
        if (
            relationship is None
            or relationship.account != account
            or relationship.detail["programManagementAccountId"] != pma_id(params["programManagementAccountIdentifier"])
            or relationship.detail["catalog"] != params["catalog"]
        ):
            raise ApiFault(
                "ResourceNotFoundException",
                f"Relationship {rid} was not found",
                resourceId=rid,
                resourceType="Relationship",
            )
        return {"relationshipDetail": relationship.detail}

    def _list(self, params: dict[str, Any], account: str) -> dict[str, Any]:
        filters = {
            "associatedAccountId": set(params.get("associatedAccountIds") or []),
            "associationType": set(params.get("associationTypes") or []),
            "displayName": set(params.get("displayNames") or []),
            "programManagementAccountId": {pma_id(p) for p in params.get("programManagementAccountIdentifiers") or []},
        }
        with self._lock:
            items = [
                r.detail
                for r in self.relationships.values()
                if r.account == account
                and r.detail["catalog"] == params["catalog"]
                and all(not wanted or r.detail.get(key) in wanted for key, wanted in filters.items())
            ]
        sort = params.get("sort")
        items.sort(key=lambda d: (d["updatedAt"], d["id"]), reverse=bool(sort and sort["sortOrder"] == "Descending"))
        start = int(params["nextToken"]) if str(params.get("nextToken", "")).isdigit() else 0
        size = params.get("maxResults") or 50
        page = items[start : start + size]
        summary_fields = _summary_fields()
        response: dict[str, Any] = {"items": [{k: v for k, v in d.items() if k in summary_fields} for d in page]}
        if start + size < len(items):
            response["nextToken"] = str(start + size)
        return response

    def call_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(call) for call in self.calls]

    def relationship_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r.detail, clientToken=r.client_token) for r in self.relationships.values()]


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
