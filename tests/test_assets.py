"""The sync's Asset: an event with the run's counts from each run that changed relationships, none from a dry run or
a run that changed nothing; and the sync scheduled on an upstream Asset by a setting. Runs with dag.test() on the
warehouses of the suite, against the emulator over HTTP."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

from dev.demo_data import sample_candidates
from include.sync import assets
from include.vocabulary import RUN_COUNT_COLUMNS
from tests.test_dag_integrity import DAGS_FOLDER
from tests.test_sync_dag import BAD, DAY, GOOD, run

DAG_FILE = DAGS_FOLDER / "partner_relationship_sync.py"


@pytest.fixture
def sync_dag():
    return DagBag(dag_folder=DAG_FILE).get_dag("partner_relationship_sync")


@pytest.fixture(autouse=True)
def _fast_settings(monkeypatch, emulator):
    emulator.emulator.configure({"create_rate": 20})
    monkeypatch.setenv("PARTNER_SYNC_RATE_PER_SECOND", "20")
    monkeypatch.setenv("PARTNER_SYNC_BATCH_SIZE", "10")


def relationship_events(dag_run_ids: set[str]) -> list[dict]:
    """The RELATIONSHIPS events these runs emitted, from Airflow's metadata database, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == assets.RELATIONSHIPS.uri, AssetEvent.source_run_id.in_(dag_run_ids))
            .order_by(AssetEvent.id)
        )
        return [dict(event.extra) for event in events]


def task_state(dag_run, task_id: str) -> str:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        [instance] = session.query(TaskInstance).filter_by(
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id
        )
        return instance.state


def test_a_run_that_creates_emits_one_event_with_its_counts(sync_dag, test_warehouse, emulator):
    test_warehouse.seed(sample_candidates(DAY))

    dag_run = run(sync_dag)

    assert dag_run.state == "success"
    [extra] = relationship_events({dag_run.run_id})
    assert extra["dag_run_id"] == dag_run.run_id
    assert (extra["changed"], extra["mode"], extra["outcomes_table"]) == (
        GOOD,
        "create",
        "partner_relationship_outcomes",
    )
    assert set(extra["counts"]) == set(RUN_COUNT_COLUMNS)
    assert (extra["counts"]["created"], extra["counts"]["rejected"], extra["counts"]["selected"]) == (
        GOOD,
        BAD,
        GOOD + BAD,
    )


def test_a_dry_run_and_a_run_that_changes_nothing_emit_no_event(sync_dag, test_warehouse, emulator):
    test_warehouse.seed(sample_candidates(DAY))

    dry = run(sync_dag, dry_run=True)
    # dag.test() keeps a run's conf in the DAG's params: each run says what it is.
    applied = run(sync_dag, dry_run=False)
    again = run(sync_dag, dry_run=False)  # every candidate is converged: nothing to change

    assert (dry.state, applied.state, again.state) == ("success", "success", "success")
    # (dag.test() replaces the run of a logical date: only the last one's tasks are left to look at.)
    assert task_state(again, "publish_changes") == "skipped"
    assert [extra["dag_run_id"] for extra in relationship_events({dry.run_id, applied.run_id, again.run_id})] == [
        applied.run_id
    ]


def test_a_failed_run_that_created_some_still_emits_its_event(sync_dag, test_warehouse, emulator, monkeypatch):
    """Relationships made before a failure are news for the DAGs downstream, even though the run failed."""
    test_warehouse.seed(sample_candidates(DAY))
    emulator.emulator.configure({"fail_next_writes": 2})  # two candidates fail, and stay to retry
    monkeypatch.setenv("PARTNER_SYNC_MAX_ATTEMPTS", "1")

    dag_run = run(sync_dag)

    assert dag_run.state == "failed"
    [extra] = relationship_events({dag_run.run_id})
    assert (extra["changed"], extra["counts"]["failed_retryable"]) == (GOOD - 2, 2)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("partner_relationship_candidates", ("name", "partner_relationship_candidates")),
        ("postgres://warehouse:5432/analytics/public/partner_relationship_candidates", ("uri", None)),
        ("  ", None),
        (None, None),
    ],
)
def test_the_upstream_asset_is_named_or_given_by_uri(setting, expected):
    ref = assets.upstream(setting)
    if expected is None:
        assert ref is None
    elif expected[0] == "name":
        assert ref.name == expected[1]
    else:
        assert ref.uri == setting


def test_the_sync_runs_on_the_upstream_asset_instead_of_its_cron_when_set(monkeypatch):
    monkeypatch.setenv("PARTNER_SYNC_SCHEDULE_ASSET", "partner_relationship_candidates")
    scheduled_on_asset = DagBag(dag_folder=DAG_FILE).get_dag("partner_relationship_sync")
    monkeypatch.delenv("PARTNER_SYNC_SCHEDULE_ASSET")
    on_cron = DagBag(dag_folder=DAG_FILE).get_dag("partner_relationship_sync")

    assert type(scheduled_on_asset.timetable).__name__ == "AssetTriggeredTimetable"
    assert scheduled_on_asset.timetable.asset_condition.name == "partner_relationship_candidates"
    assert type(on_cron.timetable).__name__ == "CronDataIntervalTimetable"
