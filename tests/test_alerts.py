"""Alerts: what each message says (plain functions), and each one delivered to real receivers on this machine (an
SMTP server, an HTTP endpoint recording Slack webhook posts, Amazon SNS as moto's server answers it), by the sync
DAG's own callbacks in dag.test() against the emulator, and by its deadline's callback."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator

import pytest
from airflow.dag_processing.dagbag import DagBag

from dev.demo_data import sample_candidates
from include.sync import alerts
from include.sync.settings import SyncSettings
from tests.conftest import sqlite_warehouse
from tests.receivers import SLACK_WEBHOOK_PATH, SlackReceiver, SmtpReceiver, SnsReceiver
from tests.receivers import drain as received
from tests.test_dag_integrity import DAGS_FOLDER
from tests.test_sync_dag import DAY, LOGICAL_DATE

DAG_ID = "partner_relationship_sync"
EMAIL_TO = "data-team@example.com, on-call@example.com"


# -- what a message says ---------------------------------------------------------------------------------------------
def test_a_failure_alert_says_which_run_what_failed_the_counts_the_first_reasons_and_how_to_recover():
    run = {
        "selected": 12,
        "created": 9,
        "failed_retryable": 3,
        "problems": json.dumps(["3 candidate(s) failed with a retryable error"]),
    }
    reasons = [
        {"candidate_id": "c7", "status": "failed", "error_code": "InternalServerException", "error_message": "boom"}
    ]

    alert = alerts.run_failed(DAG_ID, "manual__1", run, reasons)

    assert alert.subject == f"[partner sync] FAILED: {DAG_ID} manual__1"
    assert "- 3 candidate(s) failed with a retryable error" in alert.text
    assert "Counts: selected 12, created 9, failed_retryable 3" in alert.text
    assert "- c7: failed (InternalServerException): boom" in alert.text
    assert "How to recover" in alert.text and "--reprocess-behavior failed" in alert.text


def test_a_failure_alert_is_sent_even_when_the_run_cannot_be_read():
    alert = alerts.run_failed(DAG_ID, "manual__2", None, [], airflow_reason="task_failure", unread="OperationalError")

    assert "- task_failure" in alert.text and "could not be read from the warehouse: OperationalError" in alert.text


@pytest.mark.parametrize(
    ("quality", "dead_letters", "expected"),
    [
        ({"reject_ratio": 0.04, "first_checked": 100, "first_check_rejected": 4}, 0, []),
        ({"reject_ratio": 0.05, "first_checked": 100, "first_check_rejected": 5}, 0, ["5.0% of the rows checked"]),
        ({"reject_ratio": 0.0}, 1, ["1 candidate(s) wait dead-lettered"]),
    ],
)
def test_a_successful_run_warns_past_its_thresholds(quality, dead_letters, expected):
    found = alerts.warnings(quality, dead_letters, SyncSettings(warn_reject_ratio=0.05, warn_dead_letters=1))

    assert len(found) == len(expected) and all(text in item for text, item in zip(expected, found, strict=True))


def test_thresholds_of_zero_never_warn():
    quiet = SyncSettings(warn_reject_ratio=0, warn_dead_letters=0)

    assert alerts.warnings({"reject_ratio": 1.0}, 50, quiet) == []


# -- delivered to real receivers -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[SmtpReceiver, SlackReceiver, SnsReceiver]]:
    started = (SmtpReceiver().start(), SlackReceiver().start(), SnsReceiver().start())
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def receivers(servers, monkeypatch) -> tuple[SmtpReceiver, SlackReceiver, SnsReceiver]:
    """Every alert channel on, each pointing at its receiver, which holds nothing yet."""
    smtp, slack, sns = servers
    smtp.messages.clear()
    slack.posts.clear()
    sns.messages()
    for name, connection in (("alert_smtp", smtp), ("alert_slack", slack), ("alert_sns", sns)):
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(connection.connection()))
    for name, value in {
        "alert_email_to": EMAIL_TO,
        "alert_smtp_conn_id": "alert_smtp",
        "alert_slack_webhook_conn_id": "alert_slack",
        "alert_sns_topic_arn": sns.topic_arn,
        "alert_sns_aws_conn_id": "alert_sns",
    }.items():
        monkeypatch.setenv(f"PARTNER_SYNC_{name.upper()}", value)
    return servers


def each_channels_text(receivers, kind: str, run_id: str) -> list[str]:
    """The text each channel got, once every channel got this one alert and nothing else."""
    got = received(receivers)
    assert [subject for subject, _ in got] == [f"[partner sync] {kind}: {DAG_ID} {run_id}"] * 3
    return [text for _, text in got]


def test_an_alert_reaches_email_slack_and_sns(receivers):
    smtp, slack, _ = receivers
    alert = alerts.Alert("[partner sync] FAILED: a run", "What failed: <everything> & more")

    assert alerts.send(alert, settings_now()) == 3

    addresses = sorted(address.addr_spec for address in smtp.messages[0]["To"].addresses)
    path = slack.posts[0]["path"]
    got = received(receivers)
    assert [subject for subject, _ in got] == [alert.subject] * 3
    assert all("What failed: <everything> & more" in text for _, text in got)
    assert addresses == ["data-team@example.com", "on-call@example.com"]
    assert path == SLACK_WEBHOOK_PATH


def test_a_channel_that_fails_does_not_stop_the_others(receivers, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERT_SLACK", json.dumps({"conn_type": "slackwebhook", "password": "http://127.0.0.1:9/x"})
    )

    sent = alerts.send(alerts.Alert("[partner sync] WARNING: a run", "text"), settings_now())

    assert sent == 2 and [subject for subject, _ in received(receivers)] == ["[partner sync] WARNING: a run"] * 2


def settings_now() -> SyncSettings:
    from include.sync.tasks import sync_settings

    return sync_settings()


# -- sent by the DAG's callbacks -------------------------------------------------------------------------------------
@pytest.fixture
def sync_dag(tmp_path, monkeypatch, emulator):
    warehouse = sqlite_warehouse(tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_WAREHOUSE", json.dumps(warehouse.airflow_conn))
    emulator.emulator.configure({"create_rate": 20})
    monkeypatch.setenv("PARTNER_SYNC_RATE_PER_SECOND", "20")
    monkeypatch.setenv("PARTNER_SYNC_BATCH_SIZE", "10")
    warehouse.seed(sample_candidates(DAY))  # 25 valid candidates, 5 bad ones
    yield DagBag(dag_folder=DAGS_FOLDER / "partner_relationship_sync.py").get_dag(DAG_ID)
    warehouse.close()


def test_a_failed_run_alerts_every_channel_with_what_failed(sync_dag, receivers, emulator, monkeypatch):
    # Every create the model accepts answers a 500, once each (no retry): the preflight passes, every candidate fails.
    emulator.emulator.configure({"internal_error_rate": 1.0})
    monkeypatch.setenv("PARTNER_SYNC_MAX_ATTEMPTS", "1")

    dag_run = sync_dag.test(logical_date=LOGICAL_DATE)

    assert dag_run.state == "failed"
    for text in each_channels_text(receivers, "FAILED", dag_run.run_id):
        # What failed, the counts, the first reasons, how to recover.
        assert "- 25 candidate(s) failed with a retryable error" in text
        assert "Counts: selected 30, in_interval 30, rejected 5, staged 25, failed_retryable 25" in text
        assert "- cand-0001: failed (InternalServerException): Injected fault: internal error" in text
        assert "How to recover" in text


def test_a_run_with_rejects_past_the_warning_threshold_warns_and_a_clean_one_is_quiet(sync_dag, receivers, monkeypatch):
    monkeypatch.setenv("PARTNER_SYNC_WARN_REJECT_RATIO", "0.1")  # 5 of 30 new rows rejected: 16.7%

    first = sync_dag.test(logical_date=LOGICAL_DATE)

    assert first.state == "success"
    for text in each_channels_text(receivers, "WARNING", first.run_id):
        assert "16.7% of the rows checked for the first time were rejected (5 of 30)" in text
        assert "Rules failed:" in text and "- cand-bad-01: rejected (DataQuality)" in text
    # The next run checks nothing new: no warning.
    second = sync_dag.test(logical_date=LOGICAL_DATE + dt.timedelta(days=1))
    assert second.state == "success" and received(receivers) == []


def test_a_missed_deadline_alerts_every_channel(receivers):
    from include.sync import tasks

    # The context the scheduler gives a deadline's callback: the run as the REST API shows it, and the deadline.
    context = {
        "dag_run": {"dag_id": DAG_ID, "dag_run_id": "scheduled__2026-12-04", "state": "running", "queued_at": "09:00"},
        "deadline": {"id": "d1", "deadline_time": "2026-12-04T10:00:00+00:00"},
    }

    asyncio.run(tasks.deadline_missed(context))

    for text in each_channels_text(receivers, "LATE", "scheduled__2026-12-04"):
        assert "due by 2026-12-04T10:00:00+00:00; it is running now" in text


def test_the_deadline_is_set_from_the_environment_only_when_asked(monkeypatch):
    def parsed():
        return DagBag(dag_folder=DAGS_FOLDER / "partner_relationship_sync.py").get_dag(DAG_ID)

    assert not parsed().deadline
    monkeypatch.setenv("PARTNER_SYNC_DEADLINE_MINUTES", "90")
    [deadline] = parsed().deadline
    assert deadline.interval == dt.timedelta(minutes=90)
    assert deadline.callback.path == "include.sync.tasks.deadline_missed"
