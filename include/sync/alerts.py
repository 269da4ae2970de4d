"""Alerts: one message to every channel the settings name (email over SMTP, a Slack incoming webhook, an Amazon SNS
topic), through the providers' own notifiers, when a sync run fails, when it succeeds with a warning (its reject
share, or the candidates waiting dead-lettered, past their thresholds), and when it misses its deadline. Each message
says which run, what failed, the counts, the first reasons, and how to recover.

Composing a message is plain Python, tested without Airflow; the notifiers are imported only to send one. The
callbacks that read the run (Variables, connections, the warehouse) are in include.sync.tasks."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from include.sync.settings import SyncSettings
from include.vocabulary import RUN_COUNT_COLUMNS

log = logging.getLogger(__name__)
# Where the recovery of every kind of failure is told.
README_SECTION = 'README: "What fails a run, and how to recover"'
# How many of the run's candidates with a reason an alert quotes.
FIRST_REASONS = 5
# Amazon SNS takes a subject of at most 100 characters; the others take it whole.
SNS_SUBJECT_CHARACTERS = 100


@dataclass(frozen=True)
class Alert:
    subject: str
    text: str


def counts_line(run: Mapping[str, Any]) -> str:
    """The run's non-zero counts, in the order a reader follows a run."""
    counts = [f"{name} {run[name]}" for name in RUN_COUNT_COLUMNS if run.get(name)]
    return ", ".join(counts) or "none recorded"


def reason_lines(reasons: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per candidate: its id, its status, the error code and the first words of its message."""
    lines = []
    for row in reasons[:FIRST_REASONS]:
        code = f" ({row['error_code']})" if row.get("error_code") else ""
        message = " ".join((row.get("error_message") or "").split())
        lines.append(f"- {row['candidate_id']}: {row['status']}{code}: {message[:300]}")
    return lines


def run_failed(
    dag_id: str,
    run_id: str,
    run: Mapping[str, Any] | None,
    reasons: Sequence[Mapping[str, Any]],
    *,
    airflow_reason: str | None = None,
    unread: str | None = None,
) -> Alert:
    """The failure alert. `run`: the run's row (None when it could not be read: `unread` says why)."""
    problems = json.loads((run or {}).get("problems") or "[]")
    lines = [f"The sync run {run_id} of {dag_id} failed.", "", "What failed:"]
    lines += [f"- {problem}" for problem in problems] or [f"- {airflow_reason or 'a task failed (see its log)'}"]
    if unread:
        lines.append(f"- the run's row could not be read from the warehouse: {unread}")
    lines += ["", f"Counts: {counts_line(run or {})}"]
    if reasons:
        lines += ["", "First reasons:", *reason_lines(reasons)]
    lines += [
        "",
        "How to recover: fix the cause named above, then let the next run send what is left, clear this run, or run "
        f"a backfill over its days with --reprocess-behavior failed; nothing created is sent twice ({README_SECTION}).",
    ]
    return Alert(subject=f"[partner sync] FAILED: {dag_id} {run_id}", text="\n".join(lines))


def warnings(quality: Mapping[str, Any], dead_letters: int, settings: SyncSettings) -> list[str]:
    """What makes a successful run worth a warning: its reject share, or the candidates waiting dead-lettered."""
    found = []
    ratio = quality.get("reject_ratio") or 0.0
    if settings.warn_reject_ratio and ratio >= settings.warn_reject_ratio:
        gate = quality.get("max_reject_ratio")
        found.append(
            f"{ratio:.1%} of the rows checked for the first time were rejected ({quality.get('first_check_rejected')}"
            f" of {quality.get('first_checked')}): at or past partner_sync_warn_reject_ratio"
            f"={settings.warn_reject_ratio:g}" + (f", below the gate max_reject_ratio={gate:g}" if gate else "")
        )
    if settings.warn_dead_letters and dead_letters >= settings.warn_dead_letters:
        found.append(
            f"{dead_letters} candidate(s) wait dead-lettered (status dead_letter or change_failed): at or past "
            f"partner_sync_warn_dead_letters={settings.warn_dead_letters}"
        )
    return found


def run_warned(
    dag_id: str,
    run_id: str,
    run: Mapping[str, Any],
    found: Sequence[str],
    quality: Mapping[str, Any],
    reasons: Sequence[Mapping[str, Any]],
) -> Alert:
    """The warning alert of a run that succeeded."""
    rules = quality.get("rule_failures") or {}
    lines = [f"The sync run {run_id} of {dag_id} succeeded, with a warning:", *(f"- {item}" for item in found)]
    lines += ["", f"Counts: {counts_line(run)}"]
    if rules:
        lines += ["", "Rules failed: " + ", ".join(f"{rule} {n}" for rule, n in rules.items())]
    if reasons:
        lines += ["", "First reasons:", *reason_lines(reasons)]
    lines += [
        "",
        "How to recover: fix the rows in the feed (a changed row is checked again by the next run); for dead-lettered "
        "candidates, fix the cause, then trigger a run with their candidate_ids or with 'Retry rejected and failed' "
        f"({README_SECTION}).",
    ]
    return Alert(subject=f"[partner sync] WARNING: {dag_id} {run_id}", text="\n".join(lines))


def deadline_missed(dag_id: str, run_id: str, state: str | None, deadline: Any, queued_at: Any) -> Alert:
    """The alert of a run still going (or not started) at its deadline."""
    lines = [
        f"The sync run {run_id} of {dag_id} missed its deadline: queued at {queued_at}, due by {deadline}; it is "
        f"{state or 'not known'} now.",
        "",
        "What to look at: a task waiting for a pool slot (partner_central_api) or for approval (approve_plan), the "
        "API throttling the account (the tasks' logs say 'Waiting ... for a rate slot'), or more candidates than "
        "usual (the run's check_and_stage log).",
        "",
        "How to recover: nothing, if the run is making progress (it finishes, and fails if something is left); if it "
        f"is stuck, mark it failed and let the next run, or a backfill, send what is left ({README_SECTION}).",
    ]
    return Alert(subject=f"[partner sync] LATE: {dag_id} {run_id}", text="\n".join(lines))


def notifiers(alert: Alert, settings: SyncSettings) -> list[Any]:
    """The providers' notifiers of every channel the settings turn on, each holding the alert."""
    channels: list[Any] = []
    if settings.alert_email_to:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        channels.append(
            SmtpNotifier(
                to=[address.strip() for address in settings.alert_email_to.split(",") if address.strip()],
                from_email=settings.alert_email_from or None,
                subject=alert.subject,
                html_content=f"<pre>{html.escape(alert.text)}</pre>",
                smtp_conn_id=settings.alert_smtp_conn_id,
            )
        )
    if settings.alert_slack_webhook_conn_id:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        channels.append(
            SlackWebhookNotifier(
                slack_webhook_conn_id=settings.alert_slack_webhook_conn_id, text=f"*{alert.subject}*\n{alert.text}"
            )
        )
    if settings.alert_sns_topic_arn:
        from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

        channels.append(
            SnsNotifier(
                aws_conn_id=settings.alert_sns_aws_conn_id,
                target_arn=settings.alert_sns_topic_arn,
                region_name=settings.alert_sns_topic_arn.split(":")[3] or None,
                message=alert.text,
                subject=alert.subject[:SNS_SUBJECT_CHARACTERS],
            )
        )
    return channels


def send(alert: Alert, settings: SyncSettings) -> int:
    """Send to every channel; one that fails is logged and does not stop the others. How many it reached. The
    notifiers get no Airflow context: the alert is composed already, and nothing in it is a template."""
    channels = notifiers(alert, settings)
    if not channels:
        log.info("No alert channel is set (partner_sync_alert_*); not sent: %s", alert.subject)
        return 0
    sent = 0
    for channel in channels:
        try:
            channel.notify({})
            sent += 1
        except Exception:
            log.exception("The alert %r could not be sent through %s", alert.subject, type(channel).__name__)
    log.info("Alert %r sent to %d of %d channel(s)", alert.subject, sent, len(channels))
    return sent
