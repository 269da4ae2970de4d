"""The preflight, on every real warehouse and real boto3 against the emulator: the credentials and their account, the
PMAs, and each permission a mode needs, checked by probes that change nothing, before any candidate is claimed."""

from __future__ import annotations

import json
import logging

import pytest

from dev.demo_data import PMA
from dev.emulator.service import account_id_for
from include.partner_central import iam
from include.partner_central.hooks import PartnerCentralChannelHook
from include.sync import preflight
from include.sync.shared_rate_limit import WarehouseRateLimiter
from include.sync.warehouse import CandidatesTableError
from include.vocabulary import MODE_CREATE, MODE_MIRROR, MODE_UPSERT, SYNC_MODES
from tests.conftest import ACCESS_KEY
from tests.test_convergence import outcome_rows, run_sync
from tests.test_reconcile import NOW, reconcile, three_created
from tests.test_sync_steps import SETTINGS, one, request

QUOTAS = ("create", "update", "delete", "read")


@pytest.fixture(autouse=True)
def _fast_calls(emulator):
    emulator.emulator.configure({"read_rate": 100, "create_rate": 100, "update_rate": 100, "delete_rate": 100})


def check(test_warehouse, mode: str = MODE_CREATE, run_id: str = "run-1") -> preflight.Report:
    warehouse = test_warehouse.warehouse()
    warehouse.create_tables()
    limiters = {quota: WarehouseRateLimiter(warehouse, f"aws:test:{quota}", 100) for quota in QUOTAS}
    return preflight.check(PartnerCentralChannelHook(), warehouse, SETTINGS, mode, limiters, run_id)


def calls(emulator) -> list[dict]:
    return emulator.emulator.call_log()


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_a_healthy_account_passes_and_every_permission_is_probed_without_a_change(test_warehouse, emulator, mode):
    test_warehouse.seed([one("c1", NOW)])

    report = check(test_warehouse, mode)

    assert report.account == account_id_for(ACCESS_KEY) and report.catalogs == ["Sandbox"]
    assert sorted(report.allowed) == sorted(op for op in iam.OPERATIONS[mode] if op != "ListProgramManagementAccounts")
    probes = {call["operation"]: call for call in calls(emulator)}
    assert set(probes) == {"GetCallerIdentity", *iam.OPERATIONS[mode]}
    # Only the reads were answered: every other probe was refused for its content, and nothing exists.
    answered = {operation for operation, call in probes.items() if call["status"] == 200}
    assert answered == {"GetCallerIdentity", "ListRelationships", "ListProgramManagementAccounts"}
    assert emulator.emulator.relationship_list() == []


def test_expired_credentials_fail_the_preflight_with_the_fix_before_any_other_call(test_warehouse, emulator):
    test_warehouse.seed([one("c1", NOW)])
    emulator.emulator.configure({"expired_token": True})

    with pytest.raises(preflight.PreflightFailed, match=r"has no valid credentials: ExpiredToken.*Fix: check the AWS"):
        check(test_warehouse)

    assert [call["operation"] for call in calls(emulator)] == ["GetCallerIdentity"]


def test_a_missing_candidates_table_fails_the_preflight_naming_it_before_any_call(test_warehouse, emulator):
    """A fresh warehouse (the first scheduled run before the feed exists): what is missing and how to provide it,
    not a database error retried."""
    with pytest.raises(CandidatesTableError, match=r"(?s)partner_relationship_candidates cannot be read.*CREATE VIEW"):
        check(test_warehouse)

    assert calls(emulator) == []


@pytest.mark.parametrize(
    ("mode", "denied", "fails"),
    [
        (MODE_CREATE, "CreateRelationship", True),
        (MODE_CREATE, "ListProgramManagementAccounts", True),
        (MODE_CREATE, "UpdateRelationship", False),  # create mode never updates
        (MODE_UPSERT, "UpdateRelationship,ListTagsForResource", True),
        (MODE_UPSERT, "DeleteRelationship", False),
        (MODE_MIRROR, "DeleteRelationship", True),
    ],
)
def test_a_permission_the_mode_needs_and_lacks_fails_the_preflight_naming_it(
    test_warehouse, emulator, mode, denied, fails
):
    test_warehouse.seed([one("c1", NOW)])
    emulator.emulator.configure({"denied_operations": denied})

    if not fails:
        check(test_warehouse, mode)
        return
    with pytest.raises(preflight.PreflightFailed) as failed:
        check(test_warehouse, mode)

    for operation in denied.split(","):
        assert f"partnercentral:{operation} is denied" in str(failed.value)
    assert f"python -m include.partner_central.iam {mode}" in str(failed.value)


def test_a_server_error_leaves_a_permission_unchecked_and_the_run_goes_on(test_warehouse, emulator, caplog):
    test_warehouse.seed([one("c1", NOW)])
    emulator.emulator.configure({"internal_error_rate": 1.0})  # every write the model accepts answers a 500

    with caplog.at_level(logging.WARNING, logger="include.sync.preflight"):
        report = check(test_warehouse, MODE_UPSERT)

    assert "UpdateRelationship" not in report.allowed and "GetRelationship" in report.allowed
    assert "partnercentral:UpdateRelationship could not be checked (InternalServerException" in caplog.text


def test_a_pma_that_is_not_active_now_has_its_creates_held_by_the_next_plan(test_warehouse, emulator, caplog):
    three_created(test_warehouse)
    reconcile(test_warehouse)  # lists the PMA as ACTIVE
    emulator.emulator.set_program_management_account(account_id_for(ACCESS_KEY), PMA, status="INACTIVE")
    test_warehouse.seed([one("c4", NOW, "000000000004")])

    with caplog.at_level(logging.WARNING, logger="include.sync.preflight"):
        report = check(test_warehouse, run_id="sync-2")
    creates_before = [c for c in calls(emulator) if c["operation"] == "CreateRelationship"]
    run_sync(test_warehouse, request("sync-2"))

    assert report.not_active == {PMA: "INACTIVE"} and f"{PMA} (INACTIVE)" in caplog.text
    assert [c for c in calls(emulator) if c["operation"] == "CreateRelationship"] == creates_before
    held = outcome_rows(test_warehouse)["c4"]
    assert (held["status"], held["error_code"]) == ("pending", "ProgramManagementAccountNotActive")
    assert "as listed by run sync-2" in held["error_message"]


def test_each_mode_has_a_policy_of_the_models_operations():
    for mode in SYNC_MODES:
        document = iam.policy(mode)
        actions = document["Statement"][0]["Action"]
        assert actions == [f"partnercentral:{op}" for op in iam.OPERATIONS[mode]]
        assert json.loads(json.dumps(document)) == document
    with pytest.raises(ValueError, match="not an operation of the installed"):
        iam.action("CreateRelationships")


def test_the_readme_quotes_each_policy_as_the_code_makes_it():
    from dev import PROJECT_DIR

    readme = (PROJECT_DIR / "README.md").read_text()
    for use in iam.OPERATIONS:
        quoted = readme.split(f"`python -m include.partner_central.iam {use}`", 1)[1].split("```json\n", 1)[1]
        assert json.loads(quoted.split("\n```", 1)[0]) == iam.policy(use), use
