"""The manual single-relationship DAG, run whole by Airflow (dag.test) against the emulator."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.test_dag_integrity import DAGS_FOLDER


@pytest.fixture(scope="module")
def single_dag():
    return DagBag(dag_folder=DAGS_FOLDER / "partner_relationship_create_single.py").get_dag(
        "partner_relationship_create_single"
    )


def test_form_offers_the_model_enums(single_dag):
    params = single_dag.params
    assert params.get_param("sector").schema["enum"] == ["COMMERCIAL", "GOVERNMENT", "GOVERNMENT_EXCEPTION"]
    assert "DISTRIBUTOR" in params.get_param("resale_account_model").schema["enum"]
    assert params.get_param("display_name").schema["title"] == "Display name"
    assert params.get_param("display_name").description == "A human-readable name for the relationship."


def test_trigger_with_conf_creates_the_relationship(single_dag, emulator):
    conf = {
        "associated_account_id": "000000000042",
        "display_name": "Leading Zeros Ltd",
        "tags": {"team": "alliances"},
        "requested_support_plan": {"partnerLedSupport": {"coverage": "ENTIRE_ORGANIZATION", "tamLocation": "x"}},
    }
    run = single_dag.test(run_conf=conf)

    assert run.state == "success"
    [relationship] = emulator.emulator.relationship_list()
    assert relationship["associatedAccountId"] == "000000000042"
    assert relationship["displayName"] == "Leading Zeros Ltd"
    [call] = emulator.emulator.call_log()
    assert call["request"]["tags"] == [{"key": "team", "value": "alliances"}]
    assert "resaleAccountModel" not in call["request"]
