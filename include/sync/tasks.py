"""The sync DAG's tasks, wired to Airflow: settings from Variables, the warehouse from its connection, the API
through PartnerCentralChannelHook. The work itself is in include.sync.steps."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from airflow.sdk import BaseHook, Variable, get_current_context
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSkipException,
)

from include.partner_central.api_errors import AccountLevelError, ApiError
from include.partner_central.hooks import PartnerCentralChannelHook
from include.partner_central.rate_limit import READ_QUOTA
from include.sync import alerts, assets, steps
from include.sync import preflight as preflight_checks
from include.sync import reconcile as reconciling
from include.sync.candidates import candidate_key
from include.sync.plan import approval_body, approval_reason, effective_mode
from include.sync.settings import SyncSettings
from include.sync.shared_rate_limit import WarehouseRateLimiter
from include.sync.warehouse import CandidatesTableError, Warehouse
from include.vocabulary import APPROVAL_APPROVED, APPROVAL_REJECTED

log = logging.getLogger(__name__)

# Staged candidates of each action the approver is shown.
SAMPLE_PER_ACTION = 5
# Who rejected a plan nobody answered within approval_timeout_hours.
NO_ANSWER = "nobody (no answer in time)"
# Setting NAME is the Variable partner_sync_NAME, else the environment's PARTNER_SYNC_NAME (include.sync.settings).
VARIABLE_PREFIX = "partner_sync_"


def sync_settings() -> SyncSettings:
    """Airflow Variable `partner_sync_<name>`, else environment `PARTNER_SYNC_<NAME>`, else the default."""
    stored = stored_variables(VARIABLE_PREFIX)

    def lookup(name: str) -> str | None:
        key = VARIABLE_PREFIX + name
        # The environment's secrets backend: AIRFLOW_VAR_<KEY>, which a listing of the metadata database misses.
        exists = stored is None or key in stored or f"AIRFLOW_VAR_{key.upper()}" in os.environ
        value = Variable.get(key, default=None) if exists else None
        return value if value is not None else os.environ.get(key.upper())

    return SyncSettings.load(lookup)


def stored_variables(prefix: str) -> frozenset[str] | None:
    """The metadata database's Variables named `prefix...`, listed in one call: a look-up of each of the forty
    settings is a round trip through the task's supervisor to the API server (0.3 s a task, more when tasks start
    together). None when the listing is not the whole answer: a custom secrets backend is configured (Variable.keys
    lists the metadata database's only), or this process's supervisor does not list keys; every setting is then
    looked up."""
    from airflow.sdk.configuration import conf

    if conf.get("workers", "secrets_backend", fallback="") or conf.get("secrets", "backend", fallback=""):
        return None
    try:
        return frozenset(Variable.keys(prefix=prefix))
    except Exception as unlisted:  # an optimisation only: any failure falls back to the exact look-ups
        log.debug("Listing the Variables %s* failed, looking each setting up: %s", prefix, unlisted)
        return None


def engine_for(conn_id: str) -> sa.Engine:
    """A SQLAlchemy engine from the connection's own Airflow hook (SQLite, Postgres, MySQL or Snowflake provider)."""
    connection = BaseHook.get_connection(conn_id)
    hook = connection.get_hook()
    # The Snowflake hook does not pass `protocol` on to the connector: an endpoint on plain HTTP (a proxy, or the
    # fakesnow server of the tests) needs it given here.
    protocol = connection.extra_dejson.get("protocol") if connection.conn_type == "snowflake" else None
    if protocol:
        return hook.get_sqlalchemy_engine(engine_kwargs={"connect_args": {"protocol": protocol}})
    return hook.get_sqlalchemy_engine()


def read_limiter_key(settings: SyncSettings) -> str:
    """The shared schedule of the account's reads: every reconcile and every sync's look-ups share it."""
    return f"aws:{settings.aws_conn_id}:read"


def account_limiters(warehouse: Warehouse, settings: SyncSettings) -> dict[str, WarehouseRateLimiter]:
    """The AWS account's shared schedules, by quota (rate_limit.quota_of): each write's, and the reads'."""
    conn_id, rate = settings.aws_conn_id, settings.rate_per_second
    return {
        "create": WarehouseRateLimiter(warehouse, f"aws:{conn_id}", rate),
        "update": WarehouseRateLimiter(warehouse, f"aws:{conn_id}:update", rate),
        "delete": WarehouseRateLimiter(warehouse, f"aws:{conn_id}:delete", rate),
        READ_QUOTA: WarehouseRateLimiter(warehouse, read_limiter_key(settings), settings.read_rate_per_second),
    }


def has_connection(conn_id: str) -> bool:
    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


@contextmanager
def open_warehouse(settings: SyncSettings) -> Iterator[Warehouse]:
    """The state store and the warehouse: one database unless the connection `partner_sync_state` exists."""
    warehouse = engine_for(settings.warehouse_conn_id)
    state = engine_for(settings.state_conn_id) if has_connection(settings.state_conn_id) else None
    opened = Warehouse(state or warehouse, settings.tables, source=warehouse if state else None)
    try:
        yield opened
    finally:
        opened.close()
        for engine in {warehouse, state} - {None}:
            engine.dispose()


def run_request(context: Any, settings: SyncSettings) -> steps.RunRequest:
    """The run's request from its context and trigger Params; a mode wider than the setting is refused."""
    params = context["params"]
    try:
        mode = effective_mode(settings.mode, params.get("mode"))
    except ValueError as refused:
        raise AirflowFailException(str(refused)) from None
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    return steps.RunRequest(
        dag_run_id=context["run_id"],
        interval=(start, end) if start is not None and end is not None and start < end else None,
        dry_run=bool(params.get("dry_run")),
        candidate_ids=tuple(key for cid in params.get("candidate_ids") or () if (key := candidate_key(cid))),
        include_all_pending=bool(params.get("include_all_pending")),
        limit=params.get("limit"),
        max_reject_ratio=float(params.get("max_reject_ratio", 0.2)),
        backfill=str(context["dag_run"].run_type).lower().endswith("backfill"),
        mode=mode,
    )


def preflight() -> dict[str, Any]:
    """Before any candidate is claimed: the credentials and their account, the PMAs, and every permission the run's
    mode needs (include.sync.preflight). What is missing fails the run, named with its fix."""
    context = get_current_context()
    settings = sync_settings()
    run = run_request(context, settings)
    hook = PartnerCentralChannelHook(aws_conn_id=settings.aws_conn_id)
    with open_warehouse(settings) as warehouse:
        warehouse.create_tables()
        try:
            report = preflight_checks.check(
                hook, warehouse, settings, run.mode, account_limiters(warehouse, settings), run.dag_run_id
            )
        except (preflight_checks.PreflightFailed, CandidatesTableError) as failed:
            warehouse.start_run(run.dag_run_id, run.interval, run.dry_run)
            warehouse.update_run(run.dag_run_id, problems=[f"preflight: {failed}"])  # for record_run and the alert
            raise AirflowFailException(f"Preflight failed: {failed}") from None
    return {"account": report.account, "mode": run.mode, "allowed": report.allowed, "not_active": report.not_active}


def check_and_stage() -> list[dict[str, int]]:
    """Select, check and stage the run's candidates; return the batches (numbers only: rows stay in the warehouse)."""
    context = get_current_context()
    settings = sync_settings()
    with open_warehouse(settings) as warehouse:
        try:
            batches = steps.prepare(warehouse, settings, run_request(context, settings))
        except (steps.QualityGateError, steps.DeleteGuardError, CandidatesTableError) as stop:
            warehouse.update_run(context["run_id"], problems=[str(stop)])  # for record_run and the alert
            raise AirflowFailException(str(stop)) from None
    return [{"number": b.number, "first": b.first, "end": b.end} for b in batches]


def plan_to_approve(context: Any) -> tuple[str, float] | None:
    """What the approver reads and how many hours to wait, when the run's plan needs a person (it deletes, or
    changes more than approval_threshold); None when it may be applied at once (and for a dry run, which applies
    nothing)."""
    settings = sync_settings()
    run = run_request(context, settings)
    if run.dry_run:
        return None
    with open_warehouse(settings) as warehouse:
        summary = json.loads((warehouse.run(run.dag_run_id) or {}).get("quality_summary") or "{}")
        plan = summary.get("plan") or {}
        reason = approval_reason(plan, approve_deletes=settings.approve_deletes, threshold=settings.approval_threshold)
        if reason is None:
            return None
        sample = warehouse.staged_sample(run.dag_run_id, list(plan), SAMPLE_PER_ACTION)
    body = approval_body(run.dag_run_id, run.mode, plan, reason, sample, settings.tables.staging)
    return body, settings.approval_timeout_hours


def record_approval(context: Any, *, approved: bool, answer: Mapping[str, Any]) -> None:
    """Keep the person's answer (or the timeout's default) with the run: record_run ends a rejected run with nothing
    applied."""
    user = answer.get("responded_by_user") or {}
    responded_at = answer.get("responded_at")
    with open_warehouse(sync_settings()) as warehouse:
        warehouse.update_run(
            context["run_id"],
            approval={
                "decision": APPROVAL_APPROVED if approved else APPROVAL_REJECTED,
                "by": user.get("name") or user.get("id") or (NO_ANSWER if answer.get("timedout") else None),
                "at": responded_at.isoformat() if hasattr(responded_at, "isoformat") else responded_at,
            },
        )


def create_batch(batch: dict[str, int]) -> dict[str, int]:
    """Send one staged batch through the operator's code path, under the account's shared rate limit."""
    context = get_current_context()
    settings = sync_settings()
    this_batch = steps.Batch(**batch)
    context["batch_label"] = this_batch.label
    hook = PartnerCentralChannelHook(aws_conn_id=settings.aws_conn_id)
    hook.get_conn()  # the client (connection, credentials, endpoint) is built before any candidate is claimed
    with open_warehouse(settings) as warehouse:
        quotas = account_limiters(warehouse, settings)
        changes = steps.ChangeLimiters(write=quotas["update"], read=quotas[READ_QUOTA], delete=quotas["delete"])
        try:
            counts = steps.create_batch(
                warehouse, settings, run_request(context, settings), this_batch, hook, quotas["create"], changes=changes
            )
        except AccountLevelError as stop:
            # Credentials, access and clocks need a person: no task retry. A network blip or throttling may pass.
            raise (AirflowException if stop.transient else AirflowFailException)(str(stop)) from None

    return dict(counts)


def record_run() -> dict[str, Any]:
    """Write the run row and its counts; fail the DAG run when some candidates must be retried later."""
    context = get_current_context()
    settings = sync_settings()
    with open_warehouse(settings) as warehouse:
        try:
            return steps.finish(
                warehouse, run_request(context, settings), retention_days=settings.history_retention_days
            )
        except steps.SyncRunFailed as failed:
            raise AirflowFailException(str(failed)) from None


def publish_changes() -> dict[str, Any]:
    """Beside record_run, once the batches are done: when the run changed relationships (even if it fails for
    others), make sure its outcomes are in the warehouse and emit the RELATIONSHIPS Asset event with the run's counts;
    else skip (no event)."""
    context = get_current_context()
    settings = sync_settings()
    run = run_request(context, settings)
    with open_warehouse(settings) as warehouse:
        # The run row's counts (record_run's), with the history's as they are now.
        row = warehouse.run(run.dag_run_id) or {}
        counts = {**row, **warehouse.run_counts(run.dag_run_id), "dag_run_id": run.dag_run_id}
        if run.dry_run or not assets.changed(counts):
            raise AirflowSkipException("No relationship changed in this run: no Asset event")
        try:
            steps.write_back(warehouse, strict=True)  # a downstream DAG reads the outcomes as the event says
        except steps.SyncRunFailed as failed:
            raise AirflowException(str(failed)) from None
    extra = assets.event_extra(counts, mode=run.mode, outcomes_table=settings.tables.outcomes)
    context["outlet_events"][assets.RELATIONSHIPS].extra = extra
    return extra


# -- alerts: the DAG's callbacks and its deadline's (include.sync.alerts composes and sends) ------------------------
def alert_failed(context: Any) -> None:
    """The DAG run failed: tell the alert channels what failed, with the run's counts and first reasons. Sent even
    when the warehouse cannot be read (the alert then says so)."""
    settings = sync_settings()
    run_id, dag_id = context["run_id"], context["dag"].dag_id
    run, reasons, unread = None, [], None
    try:
        with open_warehouse(settings) as warehouse:
            run = warehouse.run(run_id)
            reasons = warehouse.run_reasons(run_id, alerts.FIRST_REASONS)
    except Exception as error:
        unread = f"{type(error).__name__}: {error}"
    alert = alerts.run_failed(dag_id, run_id, run, reasons, airflow_reason=context.get("reason"), unread=unread)
    alerts.send(alert, settings)


def alert_succeeded(context: Any) -> None:
    """The DAG run succeeded: a warning when its reject share or the dead-letter backlog passed its threshold."""
    settings = sync_settings()
    run_id, dag_id = context["run_id"], context["dag"].dag_id
    with open_warehouse(settings) as warehouse:
        run = warehouse.run(run_id) or {}
        quality = json.loads(run.get("quality_summary") or "{}")
        found = alerts.warnings(quality, warehouse.waiting_dead_lettered(), settings)
        if not found:
            return
        reasons = warehouse.run_reasons(run_id, alerts.FIRST_REASONS)
    alerts.send(alerts.run_warned(dag_id, run_id, run, found, quality, reasons), settings)


async def deadline_missed(context: dict[str, Any]) -> None:
    """The DAG's deadline passed with the run not done (an AsyncCallback: the triggerer runs it, with the run as the
    API shows it). The settings and the notifiers block: they run in a thread, as the providers' hooks do there."""
    from asgiref.sync import sync_to_async

    settings = await sync_to_async(sync_settings)()
    run = context["dag_run"]
    alert = alerts.deadline_missed(
        run["dag_id"], run["dag_run_id"], run.get("state"), context["deadline"]["deadline_time"], run.get("queued_at")
    )
    await sync_to_async(alerts.send)(alert, settings)


def reconcile() -> dict[str, Any]:
    """List AWS's relationships and PMAs into the warehouse, report drift, reopen candidates whose relationship is
    gone; paced at the account's read rate, shared with every other reconcile."""
    context = get_current_context()
    settings = sync_settings()
    hook = PartnerCentralChannelHook(aws_conn_id=settings.aws_conn_id)
    hook.get_conn()
    with open_warehouse(settings) as warehouse:
        warehouse.create_tables()
        limiter = WarehouseRateLimiter(warehouse, read_limiter_key(settings), settings.read_rate_per_second)
        try:
            return reconciling.reconcile(warehouse, hook, settings, context["run_id"], limiter)
        except ApiError as error:
            message = f"Listing Partner Central failed after its retries: {error}; nothing was written"
            if error.fix:
                message += f". Fix: {error.fix}"
            raise (AirflowException if error.retryable else AirflowFailException)(message) from None
