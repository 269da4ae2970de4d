"""The manual single-relationship DAG, run whole by Airflow (dag.test) against the emulator."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.factories import relationship_fields
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


def test_the_operator_maps_with_expand_and_expand_kwargs():
    import datetime as dt

    from airflow.sdk import DAG

    from include.partner_central.operators import CreateRelationshipOperator

    with DAG("mapped_create", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) as dag:
        shared = relationship_fields()
        del shared["associated_account_id"], shared["display_name"]
        by_kwargs = CreateRelationshipOperator.partial(task_id="by_kwargs", **shared).expand_kwargs(
            [{"associated_account_id": "000000000001", "display_name": "First"}]
        )
        by_list = CreateRelationshipOperator.partial(
            task_id="by_list", associated_account_id="000000000002", **shared
        ).expand(display_name=["Second", "Third"])

    assert {task.task_id for task in dag.tasks} == {"by_kwargs", "by_list"}
    assert by_kwargs.operator_class is CreateRelationshipOperator
    assert by_list.expand_input.value == {"display_name": ["Second", "Third"]}
