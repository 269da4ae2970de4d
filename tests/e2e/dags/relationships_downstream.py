"""A DAG downstream of the sync, as a team that uses the new relationships would write it: scheduled on the sync's
Asset, it returns the triggering events' `extra` (the e2e test reads it from XCom)."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import dag, task

from include.sync.assets import RELATIONSHIPS


@dag(schedule=RELATIONSHIPS, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), catchup=False)
def partner_relationships_downstream():
    @task
    def read_events(triggering_asset_events=None) -> list[dict]:
        return [dict(event.extra) for event in triggering_asset_events[RELATIONSHIPS]]

    read_events()


partner_relationships_downstream()
