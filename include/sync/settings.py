"""What a sync run is configured with. Read inside tasks, from Airflow Variables or the environment, never at parse.

Each setting NAME is looked up as the Airflow Variable `partner_sync_NAME`, then the environment variable
`PARTNER_SYNC_NAME`, then its default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from include.partner_central.retry_policy import RetryPolicy
from include.sync.dialect import identifier
from include.vocabulary import MODE_CREATE, SYNC_MODES


@dataclass(frozen=True)
class Tables:
    candidates: str = "partner_relationship_candidates"
    outcomes: str = "partner_relationship_outcomes"
    attempts: str = "partner_relationship_attempts"
    runs: str = "partner_relationship_sync_runs"
    staging: str = "partner_relationship_staging"
    rate_limit: str = "partner_central_rate_limit"
    # How far the warehouse's copies of outcomes, history and runs are written, when the state store is another
    # database (kept in the state store).
    write_back: str = "partner_relationship_write_back"
    # What the reconcile DAG writes to the warehouse: AWS's relationships and PMAs as last listed, and the drift.
    remote: str = "partner_relationships_remote"
    program_management_accounts: str = "partner_program_management_accounts"
    drift: str = "partner_relationship_drift"

    def __post_init__(self) -> None:
        for item in fields(self):
            identifier(getattr(self, item.name), f"{item.name}_table")


@dataclass(frozen=True)
class SyncSettings:
    warehouse_conn_id: str = "partner_warehouse"
    # The state store: claims, the shared rate schedule and the per-call journal, which need row locks and a write
    # per API call. When no connection of this id exists, the warehouse itself, if it can serve (SQLite, PostgreSQL,
    # MySQL/MariaDB); an analytical warehouse (Snowflake) needs one.
    state_conn_id: str = "partner_sync_state"
    aws_conn_id: str = "aws_default"
    # create (the default), upsert or mirror: what the sync may do to a relationship (include.vocabulary.SYNC_MODES).
    mode: str = MODE_CREATE
    # Mode mirror's guards: a run that would delete more relationships than this, or a larger share of the ones the
    # package holds, deletes nothing, sends nothing and fails (a truncated feed must not empty Partner Central).
    max_deletes: int = 10
    max_delete_ratio: float = 0.1
    # A plan waits for a person's approval (the DAG's approve_plan task) when it deletes (approve_deletes) or changes
    # more relationships than approval_threshold (0: no threshold); no answer in approval_timeout_hours rejects it.
    approve_deletes: bool = True
    approval_threshold: int = 0
    approval_timeout_hours: float = 24.0
    # CreateRelationship calls per second for the AWS account, shared by every run, slot and backfill.
    rate_per_second: float = 3.0
    batch_size: int = 50
    max_batches: int = 1024  # Airflow's [core] max_map_length
    max_attempts: int = 8
    max_retry_seconds: float = 120.0
    # A claim older than this (by the warehouse's clock) is taken to belong to a run that died, and may be taken
    # over: it must be longer than the longest call (and its conflict look-up), or two runs could send at once.
    claim_timeout_seconds: float = 3600.0
    # Runs that may fail on one candidate (retryable errors) before it is dead-lettered: counted, listed, and sent
    # again only when its row changes, a user names it, or a backfill or cleared run covers its interval.
    retry_budget: int = 5
    # History (attempts) and run rows older than this many days are deleted at the end of each run; 0 keeps all.
    history_retention_days: float = 90.0
    # Rows read, checked and staged at a time: bounds memory on large feeds.
    chunk_rows: int = 50_000
    # List calls per second of the reconcile DAG (the account's read quota: 5).
    read_rate_per_second: float = 5.0
    # A relationship created less than this long before a listing may not be listed yet (ListRelationships lags
    # behind creates): only older ones are judged missing from AWS.
    reconcile_grace_seconds: float = 600.0
    # The quota of relationships per program management account.
    relationships_per_pma: int = 1000
    # Alerts (include.sync.alerts), each channel on when set: email to these comma-separated addresses through the
    # SMTP connection; a Slack incoming webhook connection; an Amazon SNS topic through its own AWS connection.
    alert_email_to: str = ""
    alert_email_from: str = ""
    alert_smtp_conn_id: str = "smtp_default"
    alert_slack_webhook_conn_id: str = ""
    alert_sns_topic_arn: str = ""
    alert_sns_aws_conn_id: str = "aws_default"
    # A run that succeeds still alerts (a warning) when the share of newly checked rows it rejected reaches this (0:
    # never; below the gate, the trigger's max_reject_ratio, which fails the run), or when this many candidates wait
    # dead-lettered (dead_letter, or a change_failed relationship; 0: never).
    warn_reject_ratio: float = 0.05
    warn_dead_letters: int = 1
    tables: Tables = Tables()

    def __post_init__(self) -> None:
        if self.mode not in SYNC_MODES:
            raise ValueError(f"partner_sync_mode must be one of {', '.join(SYNC_MODES)}, got {self.mode!r}")
        if not 0 <= self.warn_reject_ratio <= 1:
            raise ValueError(f"warn_reject_ratio must be between 0 (never) and 1, got {self.warn_reject_ratio}")
        if self.warn_dead_letters < 0:
            raise ValueError(f"warn_dead_letters must be 0 (never) or more, got {self.warn_dead_letters}")
        if self.approval_threshold < 0:
            raise ValueError(f"approval_threshold must be 0 (none) or more, got {self.approval_threshold}")
        if self.approval_timeout_hours <= 0:
            raise ValueError(f"approval_timeout_hours must be positive, got {self.approval_timeout_hours}")
        if self.max_deletes < 0:
            raise ValueError(f"max_deletes must be 0 or more, got {self.max_deletes}")
        if not 0 <= self.max_delete_ratio <= 1:
            raise ValueError(f"max_delete_ratio must be between 0 and 1, got {self.max_delete_ratio}")
        for name in ("rate_per_second", "read_rate_per_second"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.reconcile_grace_seconds < 0:
            raise ValueError(f"reconcile_grace_seconds must be 0 or more, got {self.reconcile_grace_seconds}")
        if not 1 <= self.max_batches <= 1024:
            raise ValueError(f"max_batches must be between 1 and 1024, got {self.max_batches}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.retry_budget < 1:
            raise ValueError(f"retry_budget must be at least 1, got {self.retry_budget}")
        if self.history_retention_days < 0:
            raise ValueError(f"history_retention_days must be 0 (keep all) or more, got {self.history_retention_days}")
        longest = self.longest_claim_seconds
        if self.claim_timeout_seconds <= longest:
            raise ValueError(
                f"claim_timeout_seconds={self.claim_timeout_seconds:g} is not longer than the longest a call can take "
                f"({longest:g} s: {self.max_attempts} attempts with their timeouts and backoff, twice for the conflict "
                "look-up); a shorter timeout would let a second run take over a claim whose call is still under way. "
                f"Raise it above {longest:g}, or lower max_attempts / max_retry_seconds."
            )

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts, max_seconds=self.max_retry_seconds)

    @property
    def longest_claim_seconds(self) -> float:
        """How long a claim may legitimately be held: the create and its conflict look-up, each retried in full."""
        return 2 * self.retry_policy.longest_call_seconds()

    @classmethod
    def load(cls, lookup: Callable[[str], str | None]) -> SyncSettings:
        """Settings from a lookup of `partner_sync_<name>` (Variable, environment); defaults for the rest."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            if item.name == "tables":
                continue
            raw = lookup(item.name)
            if raw is not None and raw != "":
                values[item.name] = _convert(item.name, type(getattr(cls, item.name)), raw)
        table_values = {
            item.name: raw for item in fields(Tables) if (raw := lookup(f"{item.name}_table")) not in (None, "")
        }
        return cls(**values, tables=Tables(**table_values))


BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _convert(name: str, kind: type, raw: str) -> Any:
    if kind is bool:
        if raw.strip().lower() not in BOOLEANS:
            raise ValueError(f"setting partner_sync_{name} must be true or false, got {raw!r}")
        return BOOLEANS[raw.strip().lower()]
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"setting partner_sync_{name} must be a {kind.__name__}, got {raw!r}") from None
