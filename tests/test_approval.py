"""What makes a plan wait for a person, and what the approver reads: plain functions, without Airflow running."""

from __future__ import annotations

import pytest

from include.sync.plan import approval_body, approval_reason
from include.sync.settings import SyncSettings


@pytest.mark.parametrize(
    ("plan", "approve_deletes", "threshold", "expected"),
    [
        ({"create": 5}, True, 0, None),
        ({"create": 5, "delete": 1}, True, 0, "it deletes 1 relationship(s)"),
        ({"delete": 1}, False, 0, None),
        ({"create": 3, "update": 2, "no_change": 9}, True, 5, None),
        ({"create": 3, "update": 2, "tag": 1, "rejected": 50}, True, 5, "it changes 6 relationship(s), more than"),
    ],
)
def test_a_plan_waits_when_it_deletes_or_changes_more_than_the_threshold(plan, approve_deletes, threshold, expected):
    reason = approval_reason(plan, approve_deletes=approve_deletes, threshold=threshold)
    assert reason == expected if expected is None else expected in reason


def test_the_approver_reads_the_counts_why_a_sample_and_where_the_whole_plan_is():
    body = approval_body(
        "manual__1",
        "mirror",
        {"create": 2, "delete": 1},
        "it deletes 1 relationship(s)",
        [
            {
                "candidate_id": "c1",
                "action": "delete",
                "relationship_id": "rs-1",
                "differences": {"candidate_id": {"from": "c1", "to": None}},
            },
            {
                "candidate_id": "c2",
                "action": "delete",
                "relationship_id": "rs-2",
                "differences": {"desired_state": {"from": "present", "to": "absent"}},
            },
            {
                "candidate_id": "c9",
                "action": "update",
                "relationship_id": "rs-9",
                "differences": {"displayName": {"from": "Old", "to": "New"}},
            },
        ],
        "partner_relationship_staging",
    )
    assert "| create | 2 |" in body and "| delete | 1 |" in body
    assert "because it deletes 1 relationship(s)" in body
    assert "- delete `c1` (relationship `rs-1`): no longer in the candidates table" in body
    assert "- delete `c2` (relationship `rs-2`): marked absent" in body
    assert "displayName ('Old' → 'New')" in body
    assert "FROM partner_relationship_staging WHERE dag_run_id = 'manual__1'" in body


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("True", True), ("0", False), (" yes ", True)])
def test_a_yes_or_no_setting_reads_the_words_people_write(raw, expected):
    assert SyncSettings.load({"approve_deletes": raw}.get).approve_deletes is expected


def test_a_yes_or_no_setting_that_is_neither_is_named():
    with pytest.raises(ValueError, match="partner_sync_approve_deletes must be true or false, got 'maybe'"):
        SyncSettings.load({"approve_deletes": "maybe"}.get)
