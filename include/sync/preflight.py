"""The preflight: before a sync run claims any candidate, check what every call of the run depends on, and stop with
the cause and the fix when something is the account's problem.

1. The credentials, and the account they are (STS GetCallerIdentity, which needs no permission).
2. The program management accounts of each catalog the candidates name (ListProgramManagementAccounts): the listing
   must be allowed; each PMA's status is logged, and the statuses of the PMAs the last reconcile listed are brought
   up to date, so that the plan holds the creates of a PMA that is not ACTIVE now (those candidates stay pending; a
   PMA is one candidate group's problem, not the run's).
3. Every other permission the run's mode needs (include.partner_central.iam): each operation is sent once with a
   request that cannot change anything (it names a relationship that does not exist, or breaks the model's
   constraints), paced on the operation's quota; an AccessDeniedException means the policy lacks it.

Plain functions on the hook and a Warehouse, tested without Airflow; include.sync.tasks runs them as the DAG's first
task."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from include.partner_central import iam
from include.partner_central.api_errors import ApiError
from include.partner_central.hooks import PartnerCentralChannelHook
from include.partner_central.rate_limit import READ_QUOTA, RateLimiter, quota_of
from include.partner_central.relationship_request import pma_id
from include.sync.settings import SyncSettings
from include.sync.warehouse import Warehouse

log = logging.getLogger(__name__)
# What a probe names: a relationship that cannot exist (the model's pattern is rs-[a-z0-9]{13}), and the token of the
# probes that take one, so that a call log can tell them from the sync's own calls.
PROBE_RELATIONSHIP = "rs-preflight0000"
PROBE_TOKEN = "partner-sync-preflight-probe"  # noqa: S105 - an idempotency token, not a secret
# The answers that show the caller may call the operation: it was refused for its content, not its caller.
ALLOWED_ANSWERS = frozenset({"ValidationException", "ResourceNotFoundException", "ConflictException"})
# A PMA id that fits the model's pattern, for a probe when the account lists none.
ANY_PMA = "pma-0000000000000"


def is_probe(request: Mapping[str, Any]) -> bool:
    """Whether a request (a call log's) is one of the preflight's write probes, not the sync's own call."""
    names = (request.get("clientToken"), request.get("identifier"), str(request.get("resourceArn", "")).rsplit("/")[-1])
    return PROBE_TOKEN in names or PROBE_RELATIONSHIP in names


class PreflightFailed(Exception):
    """Something every call of the run depends on is missing: nothing was claimed or sent."""


@dataclass
class Report:
    account: str = ""
    identity: str = ""
    catalogs: list[str] = field(default_factory=list)
    # PMA id → status, as ListProgramManagementAccounts shows them now.
    statuses: dict[str, str] = field(default_factory=dict)
    # PMAs the candidates name that are not ACTIVE, or that the account does not list.
    not_active: dict[str, str] = field(default_factory=dict)
    not_listed: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)


def probe_request(operation: str, catalog: str, pma: str, account: str, region: str) -> dict[str, Any]:
    """A request of `operation` that the API must refuse for its content: nothing exists to change, or the request
    breaks the model (an empty display name), so nothing can be created."""
    names = {"catalog": catalog, "programManagementAccountIdentifier": pma, "identifier": PROBE_RELATIONSHIP}
    arn = f"arn:aws:partnercentral:{region}:{account}:catalog/{catalog}/relationship/{PROBE_RELATIONSHIP}"
    requests: dict[str, Callable[[], dict[str, Any]]] = {
        "CreateRelationship": lambda: {
            "catalog": catalog,
            "associationType": "END_CUSTOMER",
            "programManagementAccountIdentifier": pma,
            "displayName": "",
            "sector": "COMMERCIAL",
            "clientToken": PROBE_TOKEN,
        },
        "GetRelationship": lambda: names,
        "ListRelationships": lambda: {"catalog": catalog, "maxResults": 1},
        "UpdateRelationship": lambda: {**names, "revision": "0", "displayName": "preflight"},
        "DeleteRelationship": lambda: {**names, "clientToken": PROBE_TOKEN},
        "TagResource": lambda: {"resourceArn": arn, "tags": [{"key": "preflight", "value": "probe"}]},
        "UntagResource": lambda: {"resourceArn": arn, "tagKeys": ["preflight"]},
        "ListTagsForResource": lambda: {"resourceArn": arn},
    }
    return requests[operation]()


def check(
    hook: PartnerCentralChannelHook,
    warehouse: Warehouse,
    settings: SyncSettings,
    mode: str,
    limiters: Mapping[str, RateLimiter],
    run_id: str,
) -> Report:
    """Run every check; PreflightFailed names what is missing and how to fix it. `limiters`: the account's shared
    schedules, by quota (rate_limit.quota_of)."""
    policy = settings.retry_policy
    warehouse.check_candidates_table()  # CandidatesTableError names what is missing
    report = Report(catalogs=warehouse.candidate_catalogs())
    try:
        identity = hook.caller_identity(policy=policy)
    except ApiError as error:
        if not error.retryable:
            raise PreflightFailed(
                f"the AWS connection {settings.aws_conn_id!r} has no valid credentials: {error}. "
                f"Fix: {error.fix or 'check the connection'}"
            ) from None
        log.warning("Preflight: who the credentials are could not be checked (%s); going on", error)
        identity = {"Account": "", "Arn": "(not known)"}
    report.account, report.identity = identity["Account"], identity["Arn"]
    log.info("Preflight: the connection %s is %s (account %s)", settings.aws_conn_id, report.identity, report.account)

    denied: list[str] = []
    accounts: list[dict[str, Any]] = []
    for catalog in report.catalogs:
        try:
            accounts += hook.list_program_management_accounts(
                catalog=catalog, limiter=limiters[READ_QUOTA], policy=policy
            )
        except ApiError as error:
            denied += _refusal("ListProgramManagementAccounts", error)
    report.statuses = {account["id"]: account["status"] for account in accounts}
    named = named_program_management_accounts(warehouse.candidate_program_management_accounts())
    report.not_active = {pma: status for pma in named if (status := report.statuses.get(pma, "ACTIVE")) != "ACTIVE"}
    report.not_listed = [pma for pma in named if pma not in report.statuses]
    if accounts:
        warehouse.update_program_management_statuses(run_id, report.statuses)

    probe_pma = next(iter(sorted(report.statuses)), named[0] if named else ANY_PMA)
    for operation in iam.OPERATIONS[mode]:
        if operation == "ListProgramManagementAccounts" or not report.catalogs:
            continue
        request = probe_request(operation, report.catalogs[0], probe_pma, report.account, hook.region_name)
        answer = hook.probe(operation, request, limiter=limiters[quota_of(operation)], policy=policy)
        if answer is None or answer.code in ALLOWED_ANSWERS:
            report.allowed.append(operation)
        else:
            denied += _refusal(operation, answer)
    if denied:
        raise PreflightFailed(
            f"the AWS identity {report.identity} may not call what mode {mode} needs: {'; '.join(denied)}. Fix: "
            f'attach the policy `python -m include.partner_central.iam {mode}` prints (README: "The IAM policy"); '
            "nothing was claimed or sent"
        )
    _log(report, mode)
    return report


def _refusal(operation: str, error: ApiError) -> list[str]:
    """A refusal of this caller, as one item of the preflight's list. An error that is the account's and needs a
    person (credentials, the clock) stops the preflight with its fix; one a later call may get past (a server
    error or throttling after every retry, the endpoint) leaves the permission unchecked: the run goes on, and its
    calls meet the same error in their own scope."""
    if error.code in ("AccessDeniedException", "AccessDenied"):
        return [f"{iam.action(operation)} is denied"]
    if error.account_level and not error.retryable:
        raise PreflightFailed(f"{operation} could not be checked: {error}. Fix: {error.fix}") from None
    log.warning("Preflight: %s could not be checked (%s); going on", iam.action(operation), error)
    return []


def _log(report: Report, mode: str) -> None:
    log.info(
        "Preflight passed for mode %s: catalogs %s; PMAs %s; allowed: %s",
        mode,
        ", ".join(report.catalogs) or "none named yet",
        ", ".join(f"{pma} {status}" for pma, status in sorted(report.statuses.items())) or "none listed",
        ", ".join(report.allowed),
    )
    if report.not_active:
        log.warning(
            "PMA(s) the candidates name that are not ACTIVE: %s. Their creates are held pending by the plan (when a "
            "reconcile listed them) or refused by the API; activate them, and the next run sends them",
            ", ".join(f"{pma} ({status})" for pma, status in sorted(report.not_active.items())),
        )
    if report.not_listed:
        log.warning(
            "PMA(s) the candidates name that the account does not list: %s (a typo in the feed, another account's "
            "PMA, or one not used yet)",
            ", ".join(report.not_listed),
        )


def named_program_management_accounts(values: Sequence[str | None]) -> list[str]:
    """The PMA ids of the values the candidates give (ids or ARNs), each once."""
    return sorted({pma_id(value.strip()) for value in values if value and value.strip()})
