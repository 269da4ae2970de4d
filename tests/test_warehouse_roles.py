"""The two roles of a database: the state store (claims, schedule, journal) and the warehouse (candidates, outcomes
written back). With Snowflake as the warehouse (a local fakesnow server) and PostgreSQL as the state store, outcomes
reach the warehouse in bulk; and the SQL the warehouse side sends compiles for Redshift and BigQuery."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from dev.demo_data import distinct_candidates
from include.partner_central.hooks import PartnerCentralChannelHook
from include.sync import steps
from include.sync.settings import SyncSettings, Tables
from include.sync.shared_rate_limit import WarehouseRateLimiter
from include.sync.warehouse import Outcome, Schema, replace_statements
from include.vocabulary import CANDIDATE_COLUMNS
from tests.test_sync_steps import DAY, request, statuses

# A batch's write-back: one DELETE and one INSERT for each of the outcome, history and run tables.
STATEMENTS_PER_WRITE_BACK = 6


@pytest.mark.snowflake
@pytest.mark.postgres
@pytest.mark.parametrize("test_warehouse", ["snowflake"], indirect=True)
def test_a_snowflake_run_writes_back_in_a_few_statements_per_batch_and_a_failed_write_back_is_caught_up(
    test_warehouse, emulator, caplog
):
    rows = distinct_candidates(DAY, 12, 400)
    test_warehouse.seed(rows)
    settings = SyncSettings(rate_per_second=50, batch_size=4)
    run = request("snowflake", max_reject_ratio=0.5)
    warehouse = test_warehouse.warehouse()
    batches = steps.prepare(warehouse, settings, run)
    limiter = WarehouseRateLimiter(warehouse, "aws:test", settings.rate_per_second)
    sent_to_warehouse: list[str] = []
    sa.event.listen(warehouse.source, "before_cursor_execute", lambda *args: sent_to_warehouse.append(args[2]))

    def send(batch: steps.Batch) -> list[str]:
        sent_to_warehouse.clear()
        steps.create_batch(warehouse, settings, run, batch, PartnerCentralChannelHook(), limiter)
        return list(sent_to_warehouse)

    first = send(batches[0])
    assert len(first) <= STATEMENTS_PER_WRITE_BACK, first  # never one per call
    assert sorted(statuses(test_warehouse).values()) == ["created"] * 4

    # The warehouse refuses the next write-back (its outcome table is away): the batch still records every outcome in
    # the state store, says so, and the next batch writes both back.
    test_warehouse.execute("ALTER TABLE partner_relationship_outcomes RENAME TO outcomes_away")
    with caplog.at_level(logging.WARNING, logger="include.sync.steps"):
        send(batches[1])
    assert "the next task writes it back" in caplog.text
    test_warehouse.execute("ALTER TABLE outcomes_away RENAME TO partner_relationship_outcomes")
    assert len(statuses(test_warehouse)) == 4
    assert len(test_warehouse.state.query("SELECT * FROM partner_relationship_outcomes")) == 8

    third = send(batches[2])
    assert len(third) <= STATEMENTS_PER_WRITE_BACK, third
    assert statuses(test_warehouse) == dict.fromkeys((r["candidate_id"] for r in rows), "created")
    assert steps.finish(warehouse, run)["created"] == 12
    [run_row] = test_warehouse.query("SELECT created, ended_at FROM partner_relationship_sync_runs")
    assert run_row["created"] == 12 and run_row["ended_at"] is not None
    assert len(test_warehouse.query("SELECT * FROM partner_relationship_attempts")) == 12


def _dialect(name: str) -> sa.Dialect:
    if name == "redshift":
        from sqlalchemy_redshift.dialect import RedshiftDialect_redshift_connector

        return RedshiftDialect_redshift_connector()
    from sqlalchemy_bigquery import BigQueryDialect

    return BigQueryDialect()


@pytest.mark.parametrize(
    ("name", "text_type", "quote"),
    [("redshift", "VARCHAR", '"'), ("bigquery", "STRING", "`")],
)
def test_the_warehouse_side_sql_compiles_for_redshift_and_bigquery(name, text_type, quote):
    """Compiled only: what the sync sends to an analytical warehouse (read the candidates, find duplicated ids, create
    the copies of outcomes, history and runs, write them back) in each warehouse's own dialect."""
    dialect = _dialect(name)
    schema = Schema(Tables(candidates="crm.partner_candidates"), indexes=False)
    outcome = {"candidate_id": "c1", "status": "created", "dag_run_id": "r1", **dict.fromkeys(("attempts",), 1)}
    history = {**outcome, "request_json": "{}"}
    statements = [
        schema.candidate_scan(CANDIDATE_COLUMNS, ["c1"], with_prior=False),
        schema.duplicate_ids(),
        *(sa.schema.CreateTable(table) for table in schema.copied),
        *(statement for statement, _ in replace_statements(schema.outcomes, [outcome])),
        *(statement for statement, _ in replace_statements(schema.attempts, [history])),
    ]
    compiled = [str(statement.compile(dialect=dialect)) for statement in statements]

    scan, duplicates, *_ = compiled
    assert "CAST(" in scan and f"AS {text_type})" in scan and "ORDER BY" in scan
    assert "crm" in scan and "partner_candidates" in scan
    assert "GROUP BY" in duplicates and "HAVING" in duplicates
    assert sum(text.startswith("\nCREATE TABLE") for text in compiled) == 3
    assert sum(text.startswith("DELETE FROM") for text in compiled) == 2
    assert sum(text.startswith("INSERT INTO") for text in compiled) == 2
    if quote == "`":
        assert "`" in scan
    assert Outcome("c1", "created").status == outcome["status"]
