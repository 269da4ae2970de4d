"""The sync DAG end to end with dag.test(), on SQLite and on PostgreSQL, against the emulator over HTTP."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from airflow.dag_processing.dagbag import DagBag

from dev.demo_data import PMA, sample_candidates
from dev.emulator.service import max_in_any_second
from include.sync.preflight import is_probe
from tests.test_dag_integrity import DAGS_FOLDER

DAY = dt.date(2026, 11, 20)
# dag.test() makes a manual run; for logical date D it covers the last complete interval, [D - 1 day, D).
LOGICAL_DATE = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
GOOD, BAD = 25, 5


@pytest.fixture
def sync_dag():
    # Parsed anew for each test: dag.test() keeps a run's conf in the DAG's params.
    return DagBag(dag_folder=DAGS_FOLDER / "partner_relationship_sync.py").get_dag("partner_relationship_sync")


@pytest.fixture(autouse=True)
def _fast_settings(monkeypatch, emulator):
    emulator.emulator.configure({"create_rate": 20})
    monkeypatch.setenv("PARTNER_SYNC_RATE_PER_SECOND", "20")
    monkeypatch.setenv("PARTNER_SYNC_BATCH_SIZE", "10")


def run(sync_dag, logical_date=LOGICAL_DATE, **conf):
    return sync_dag.test(logical_date=logical_date, run_conf=conf or None)


def sync_calls(emulator, operation: str) -> list[dict]:
    """The sync's calls of an operation (its preflight's probes, which change nothing, left out)."""
    return [
        call
        for call in emulator.emulator.call_log()
        if call["operation"] == operation and not is_probe(call["request"])
    ]


def creates(emulator) -> list[dict]:
    return sync_calls(emulator, "CreateRelationship")


def outcomes(test_warehouse) -> dict[str, dict]:
    rows = test_warehouse.query("SELECT * FROM partner_relationship_outcomes")
    return {row["candidate_id"]: row for row in rows}


def assert_each_valid_candidate_created_once(test_warehouse, emulator):
    relationships = emulator.emulator.relationship_list()
    assert len(relationships) == GOOD
    created = [call for call in creates(emulator) if call["status"] == 200]
    per_token = Counter(call["client_token"] for call in created)
    assert len(per_token) == GOOD
    states = outcomes(test_warehouse)
    done = {cid: row for cid, row in states.items() if row["status"] in ("created", "already_exists")}
    assert len(done) == GOOD
    assert {row["relationship_id"] for row in done.values()} == {r["id"] for r in relationships}


def test_every_valid_candidate_is_created_once_and_every_rejected_one_says_why(sync_dag, test_warehouse, emulator):
    test_warehouse.seed(sample_candidates(DAY))

    dag_run = run(sync_dag)

    assert dag_run.state == "success"
    assert_each_valid_candidate_created_once(test_warehouse, emulator)
    states = outcomes(test_warehouse)
    reasons = {cid: row["error_message"] for cid, row in states.items() if row["status"] == "rejected"}
    assert set(reasons) == {f"cand-bad-0{n}" for n in range(1, 6)}
    assert "exactly 12 digits" in reasons["cand-bad-01"]
    assert "sector: one of" in reasons["cand-bad-02"]
    assert "display_name: not blank" in reasons["cand-bad-03"]
    assert "exactly one of" in reasons["cand-bad-04"]
    assert "display_name: length 1..30" in reasons["cand-bad-05"] and "tags" in reasons["cand-bad-05"]
    [run_row] = test_warehouse.query("SELECT * FROM partner_relationship_sync_runs")
    assert (run_row["selected"], run_row["rejected"], run_row["created"]) == (GOOD + BAD, BAD, GOOD)
    history = test_warehouse.query("SELECT status, COUNT(*) AS n FROM partner_relationship_attempts GROUP BY status")
    assert {row["status"]: row["n"] for row in history} == {"created": GOOD, "rejected": BAD}
    assert batch_labels(dag_run) == ["batch 0: rows 0-9", "batch 1: rows 10-19", "batch 2: rows 20-24"]


def batch_labels(dag_run) -> list[str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        instances = session.query(TaskInstance).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id="create_relationships"
        )
        return sorted(ti.rendered_map_index for ti in instances)


def test_a_dry_run_calls_nothing_and_leaves_the_current_state_alone(sync_dag, test_warehouse, emulator):
    test_warehouse.seed(sample_candidates(DAY))

    dag_run = run(sync_dag, dry_run=True)

    assert dag_run.state == "success"
    assert creates(emulator) == []
    assert outcomes(test_warehouse) == {}
    history = test_warehouse.query("SELECT status, request_json FROM partner_relationship_attempts")
    would_send = [row for row in history if row["status"] == "dry_run"]
    assert len(would_send) == GOOD
    assert all('"clientToken": "pcrel-' in row["request_json"] for row in would_send)


def test_rerunning_the_same_interval_makes_no_create_call(sync_dag, test_warehouse, emulator):
    test_warehouse.seed(sample_candidates(DAY))
    run(sync_dag)
    calls_after_first = len(creates(emulator))

    second = run(sync_dag)

    assert second.state == "success"
    assert len(creates(emulator)) == calls_after_first == GOOD
    last = test_warehouse.query(
        "SELECT skipped_done, created FROM partner_relationship_sync_runs WHERE dag_run_id = ?", [second.run_id]
    )
    assert last == [{"skipped_done": GOOD, "created": 0}]


def test_an_outage_fails_the_run_and_a_rerun_creates_the_missed_rows_once(
    sync_dag, test_warehouse, emulator, monkeypatch
):
    test_warehouse.seed(sample_candidates(DAY))
    monkeypatch.setenv("PARTNER_SYNC_MAX_ATTEMPTS", "2")
    emulator.emulator.configure({"internal_error_rate": 1.0})

    outage = run(sync_dag)

    assert outage.state == "failed"
    failed = [row for row in outcomes(test_warehouse).values() if row["status"] == "failed"]
    assert len(failed) == GOOD
    assert all(row["retryable"] and row["error_code"] == "InternalServerException" for row in failed)
    assert emulator.emulator.relationship_list() == []

    emulator.emulator.configure({"internal_error_rate": 0.0})
    # The next day's scheduled run picks up the retryable failures of the day before.
    fixed = run(sync_dag, logical_date=LOGICAL_DATE + dt.timedelta(days=1))

    assert fixed.state == "success"
    assert_each_valid_candidate_created_once(test_warehouse, emulator)


def test_a_lost_response_yields_one_relationship_and_a_good_outcome(sync_dag, test_warehouse, emulator):
    test_warehouse.seed(sample_candidates(DAY))
    emulator.emulator.configure({"lose_next_responses": 3})

    dag_run = run(sync_dag)

    assert dag_run.state == "success"
    assert_each_valid_candidate_created_once(test_warehouse, emulator)
    assert sum(call["dropped"] for call in creates(emulator)) == 3
    retried = [row for row in outcomes(test_warehouse).values() if row["attempts"] > 1]
    assert sum(row["attempts"] - 1 for row in retried) == 3
    assert {row["status"] for row in retried} == {"created"}


def test_the_reject_ratio_gate_stops_the_run_before_any_call(sync_dag, test_warehouse, emulator):
    rows = sample_candidates(DAY, good=5)  # 5 good, 5 bad: half rejected

    test_warehouse.seed(rows)
    dag_run = run(sync_dag, max_reject_ratio=0.3)

    assert dag_run.state == "failed"
    assert creates(emulator) == []
    [run_row] = test_warehouse.query("SELECT rejected, staged, quality_summary FROM partner_relationship_sync_runs")
    assert run_row["rejected"] == 5 and run_row["staged"] == 0
    assert '"reject_ratio": 0.5' in run_row["quality_summary"]


def test_the_rate_limit_holds_across_batches(sync_dag, test_warehouse, emulator, monkeypatch):
    test_warehouse.seed(sample_candidates(DAY, good=12))
    emulator.emulator.configure({"create_rate": 3})
    monkeypatch.setenv("PARTNER_SYNC_RATE_PER_SECOND", "3")
    monkeypatch.setenv("PARTNER_SYNC_BATCH_SIZE", "4")

    dag_run = run(sync_dag, max_reject_ratio=0.5)

    assert dag_run.state == "success"
    calls = creates(emulator)
    assert [call["error_code"] for call in calls] == [None] * 12
    assert max_in_any_second([call["started"] for call in calls]) <= 3


def test_a_trigger_that_breaks_the_params_schema_is_refused(sync_dag, test_warehouse, emulator):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="max_reject_ratio"):
        run(sync_dag, max_reject_ratio=1.5)
    assert creates(emulator) == []


def test_expired_credentials_fail_the_run_at_its_preflight_and_the_next_run_sends_every_candidate(
    sync_dag, test_warehouse, emulator
):
    test_warehouse.seed(sample_candidates(DAY))
    emulator.emulator.configure({"expired_token": True})

    broken = run(sync_dag)

    assert broken.state == "failed"
    states = {ti.task_id: ti.state for ti in broken.get_task_instances()}
    assert (states["preflight"], states["check_and_stage"], states["record_run"]) == (
        "failed",
        "upstream_failed",
        "failed",
    )
    assert outcomes(test_warehouse) == {}  # nothing claimed, nothing recorded
    assert [call["operation"] for call in emulator.emulator.call_log()] == ["GetCallerIdentity"]
    [row] = test_warehouse.query("SELECT * FROM partner_relationship_sync_runs")
    assert "preflight: the AWS connection 'aws_default' has no valid credentials: ExpiredToken" in row["problems"]

    emulator.emulator.configure({"expired_token": False})
    fixed = run(sync_dag, logical_date=LOGICAL_DATE + dt.timedelta(days=3))  # a later day: the pending rows come too

    assert fixed.state == "success"
    assert_each_valid_candidate_created_once(test_warehouse, emulator)


def test_the_reconcile_dag_finds_a_console_delete_and_the_next_sync_creates_it_again(
    sync_dag, test_warehouse, emulator, raw_client, monkeypatch
):
    test_warehouse.seed(sample_candidates(DAY))
    assert run(sync_dag).state == "success"
    gone = next(row for row in outcomes(test_warehouse).values() if row["status"] == "created")
    raw_client.delete_relationship(
        catalog="Sandbox", programManagementAccountIdentifier=PMA, identifier=gone["relationship_id"]
    )
    monkeypatch.setenv("PARTNER_SYNC_RECONCILE_GRACE_SECONDS", "0")
    reconcile_dag = DagBag(dag_folder=DAGS_FOLDER / "partner_relationship_reconcile.py").get_dag(
        "partner_relationship_reconcile"
    )

    assert reconcile_dag.test(logical_date=LOGICAL_DATE).state == "success"

    assert outcomes(test_warehouse)[gone["candidate_id"]]["status"] == "pending"
    drift = test_warehouse.query("SELECT kind, relationship_id FROM partner_relationship_drift")
    assert {(row["kind"], row["relationship_id"]) for row in drift} == {("missing_remote", gone["relationship_id"])}
    assert len(test_warehouse.query("SELECT * FROM partner_relationships_remote")) == GOOD - 1

    assert run(sync_dag, logical_date=LOGICAL_DATE + dt.timedelta(days=1)).state == "success"
    again = outcomes(test_warehouse)[gone["candidate_id"]]
    assert again["status"] == "created" and again["relationship_id"] != gone["relationship_id"]
    assert len(emulator.emulator.relationship_list()) == GOOD


def test_upsert_from_the_setting_updates_a_renamed_candidate_and_a_run_may_not_widen_the_mode(
    sync_dag, test_warehouse, emulator, monkeypatch
):
    test_warehouse.seed(sample_candidates(DAY))
    assert run(sync_dag).state == "success"
    renamed = "cand-0002"
    test_warehouse.execute(
        "UPDATE partner_relationship_candidates SET display_name = ? WHERE candidate_id = ?", ["Renamed", renamed]
    )

    # The setting says create: a run that asks for upsert is refused, and nothing is sent.
    refused = run(sync_dag, logical_date=LOGICAL_DATE + dt.timedelta(days=1), mode="upsert")
    assert refused.state == "failed"
    assert sync_calls(emulator, "UpdateRelationship") == []

    monkeypatch.setenv("PARTNER_SYNC_MODE", "upsert")
    narrowed = run(sync_dag, logical_date=LOGICAL_DATE + dt.timedelta(days=2), mode="create")
    assert narrowed.state == "success"
    assert sync_calls(emulator, "UpdateRelationship") == []

    upsert = run(sync_dag, logical_date=LOGICAL_DATE + dt.timedelta(days=3), mode=None)  # the setting's
    assert upsert.state == "success"
    updates = sync_calls(emulator, "UpdateRelationship")
    assert len(updates) == 1
    relationship = outcomes(test_warehouse)[renamed]
    assert relationship["status"] == "updated"
    shown = {r["id"]: r["displayName"] for r in emulator.emulator.relationship_list()}
    assert shown[relationship["relationship_id"]] == "Renamed"
    assert len(creates(emulator)) == GOOD


def test_mirror_from_the_setting_deletes_a_removed_candidate_once_and_its_guard_fails_the_run(
    sync_dag, test_warehouse, emulator, monkeypatch
):
    test_warehouse.seed(sample_candidates(DAY))
    assert run(sync_dag).state == "success"
    emulator.emulator.configure({"delete_rate": 20})
    removed = ["cand-0002", "cand-0003", "cand-0004"]
    gone = {outcomes(test_warehouse)[cid]["relationship_id"] for cid in removed}
    for candidate_id in removed:
        test_warehouse.execute("DELETE FROM partner_relationship_candidates WHERE candidate_id = ?", [candidate_id])
    monkeypatch.setenv("PARTNER_SYNC_MODE", "mirror")
    monkeypatch.setenv("PARTNER_SYNC_MAX_DELETES", "2")
    monkeypatch.setenv("PARTNER_SYNC_APPROVE_DELETES", "false")  # approvals: tests/e2e/test_plan_approval.py

    # Three deletes, past max_deletes=2: check_and_stage fails, and nothing is deleted.
    guarded = run(sync_dag, logical_date=LOGICAL_DATE + dt.timedelta(days=1), mode=None)
    assert guarded.state == "failed"
    assert {ti.task_id: ti.state for ti in guarded.get_task_instances()}["check_and_stage"] == "failed"
    assert len(emulator.emulator.relationship_list()) == GOOD

    monkeypatch.setenv("PARTNER_SYNC_MAX_DELETES", "3")
    monkeypatch.setenv("PARTNER_SYNC_MAX_DELETE_RATIO", "0.2")
    mirrored = run(sync_dag, logical_date=LOGICAL_DATE + dt.timedelta(days=2), mode=None)
    assert mirrored.state == "success"
    deletes = sync_calls(emulator, "DeleteRelationship")
    assert len(deletes) == 3
    assert not gone & {r["id"] for r in emulator.emulator.relationship_list()}
    assert {cid: outcomes(test_warehouse)[cid]["status"] for cid in removed} == dict.fromkeys(removed, "deleted")


@pytest.mark.parametrize("test_warehouse", ["sqlite"], indirect=True)
def test_a_variable_in_the_metadata_database_sets_a_setting_over_the_environment(
    sync_dag, test_warehouse, emulator, monkeypatch
):
    """The tasks list the partner_sync_* Variables once and look up only those (include.sync.tasks.stored_variables):
    a Variable stored in the metadata database wins over PARTNER_SYNC_BATCH_SIZE (10, from the fixture)."""
    from airflow.models import Variable as StoredVariable

    test_warehouse.seed(sample_candidates(DAY))
    StoredVariable.set("partner_sync_batch_size", "20")
    try:
        dag_run = run(sync_dag)
    finally:
        StoredVariable.delete("partner_sync_batch_size")
    assert dag_run.state == "success"
    assert batch_labels(dag_run) == ["batch 0: rows 0-19", "batch 1: rows 20-24"]
