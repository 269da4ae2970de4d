"""The sync's Airflow Assets: what it changes, for other DAGs to be scheduled on, and what it can be scheduled on.

`RELATIONSHIPS` gets an event from each run that changed relationships (created, updated or deleted one), once the
outcomes are in the warehouse, with the run's counts in its `extra` (`event_extra`). A dry run, or a run that
changed nothing, emits none. The sync can itself run when an upstream Asset (the candidates table, refreshed by
another DAG) gets an event instead of on its cron (`upstream`, the setting PARTNER_SYNC_SCHEDULE_ASSET).

Imported by the DAG file when it is parsed: nothing here reads a database or imports the sync's code."""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

from include.vocabulary import (
    ALREADY_DELETED,
    ALREADY_EXISTS,
    ALREADY_UPDATED,
    CREATED,
    DELETED,
    RUN_COUNT_COLUMNS,
    UPDATED,
)

# Partner Central's relationships, as this package keeps them (`x-`: a scheme of this package's own, which Airflow
# takes as it is).
RELATIONSHIPS = Asset(name="partner_central_relationships", uri="x-partner-central://relationships")
# What a relationship changed in a run ends in: a downstream DAG's work (the lost response's retry that found its
# create, update or delete already made still changed the relationship for the warehouse).
CHANGED = (CREATED, ALREADY_EXISTS, UPDATED, ALREADY_UPDATED, DELETED, ALREADY_DELETED)


def upstream(setting: str | None) -> Any:
    """The Asset whose events trigger the sync, from PARTNER_SYNC_SCHEDULE_ASSET: a URI (`scheme://...`) or the
    asset's name, as the DAG that updates the candidates declares it; None (unset or blank): the cron schedule."""
    value = (setting or "").strip()
    if not value:
        return None
    return Asset.ref(uri=value) if "://" in value else Asset.ref(name=value)


def changed(counts: dict[str, Any]) -> int:
    """How many relationships a run changed, from its counts (the run row's columns)."""
    return sum(int(counts.get(status) or 0) for status in CHANGED)


def event_extra(run: dict[str, Any], *, mode: str, outcomes_table: str) -> dict[str, Any]:
    """The event's `extra`: which run, in which mode, its counts (the run row's, RUN_COUNT_COLUMNS), how many
    relationships changed, and the warehouse table holding each candidate's outcome."""
    return {
        "dag_run_id": run["dag_run_id"],
        "mode": mode,
        "changed": changed(run),
        "counts": {key: int(run.get(key) or 0) for key in RUN_COUNT_COLUMNS},
        "outcomes_table": outcomes_table,
    }
