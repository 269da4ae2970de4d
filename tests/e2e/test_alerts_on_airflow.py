"""Alerts on the running Airflow: a run that fails alerts every channel (the DAG processor runs the DAG's failure
callback), and a run past its deadline too (the scheduler finds it, the triggerer runs the callback), each to a real
receiver: an SMTP server, an HTTP endpoint recording Slack webhook posts, and SNS as moto's server answers it."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from dev.demo_data import distinct_candidates as candidates
from tests.e2e.conftest import DAG_ID, Stack
from tests.receivers import SlackReceiver, SmtpReceiver, SnsReceiver, drain
from tests.warehouses import TestWarehouse

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def alerting(e2e: Stack) -> Iterator[tuple[SmtpReceiver, SlackReceiver, SnsReceiver]]:
    """The receivers, and the stack's alert channels pointing at them, for one test."""
    receivers = (SmtpReceiver().start(), SlackReceiver().start(), SnsReceiver().start())
    smtp, slack, sns = receivers
    for conn_id, receiver in (("alert_smtp", smtp), ("alert_slack", slack), ("alert_sns", sns)):
        e2e.set_connection(conn_id, receiver.connection())
    variables = {
        "partner_sync_alert_email_to": "data-team@example.com",
        "partner_sync_alert_smtp_conn_id": "alert_smtp",
        "partner_sync_alert_slack_webhook_conn_id": "alert_slack",
        "partner_sync_alert_sns_topic_arn": sns.topic_arn,
        "partner_sync_alert_sns_aws_conn_id": "alert_sns",
    }
    e2e.set_variables(variables)
    try:
        yield receivers
    finally:
        e2e.delete_variables(variables)
        for receiver in receivers:
            receiver.stop()


def wait_for_alerts(receivers, subjects: set[str], timeout: float = 120) -> list[tuple[str, str]]:
    """Every alert received until each channel has had each of these subjects."""
    got: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while True:
        got += drain(receivers)
        if all(sum(subject == wanted for subject, _ in got) >= 3 for wanted in subjects):
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"alerts received after {timeout:.0f} s: {[subject for subject, _ in got]}")
        time.sleep(1)


def test_a_failed_run_past_its_deadline_alerts_every_channel(alerting, e2e: Stack, warehouse: TestWarehouse):
    warehouse.seed(candidates(dt.date(2026, 5, 1), 3, first_account=5000))
    # Each call answers after 2 s, and creates are refused: the preflight fails the run, which lasts past its
    # deadline (3 s after it was queued).
    e2e.emulator("config", {"denied_operations": "CreateRelationship", "latency_ms": 2000})

    run_id = e2e.trigger_sync({})

    assert e2e.wait_sync_runs([run_id], timeout=300) == {run_id: "failed"}
    failed, late = f"[partner sync] FAILED: {DAG_ID} {run_id}", f"[partner sync] LATE: {DAG_ID} {run_id}"
    got = [(subject, text) for subject, text in wait_for_alerts(alerting, {failed, late}) if run_id in subject]
    assert sorted(subject for subject, _ in got) == [failed] * 3 + [late] * 3
    for subject, text in got:
        if subject == failed:
            assert "preflight: the AWS identity" in text and "partnercentral:CreateRelationship is denied" in text
            assert "python -m include.partner_central.iam create" in text and "How to recover" in text
        else:
            assert "missed its deadline" in text and "What to look at" in text
