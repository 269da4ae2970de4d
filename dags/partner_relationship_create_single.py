"""
Create one AWS Partner Central relationship from the Airflow UI.

Trigger it with "Trigger DAG": the form lists every field of CreateRelationship, with the titles, descriptions and
choices of the installed API model. The task is idempotent: triggering it twice for the same relationship returns
the existing one as `already_exists`.
"""

from __future__ import annotations

import datetime as dt

# Imported here, not only by the operator's module, for the DAG processor's [dag_processor]
# parsing_pre_import_modules: it imports the airflow.* modules a DAG file names once, before forking each parse
# process, so that the Amazon provider's base operator (boto3, botocore, requests) is not imported again per parse.
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator  # noqa: F401
from airflow.sdk import DAG, Param

from include.partner_central.form_fields import create_form_fields
from include.partner_central.operators import CreateRelationshipOperator

DEMO_DEFAULTS = {
    "catalog": "Sandbox",
    "association_type": "END_CUSTOMER",
    "program_management_account_identifier": "pma-demo123456789",
    "display_name": "Example Customer",
    "sector": "COMMERCIAL",
    "associated_account_id": "123456789012",
}
FORM = create_form_fields(DEMO_DEFAULTS)
JSON_FIELDS = {"tags", "requested_support_plan"}

with DAG(
    dag_id="partner_relationship_create_single",
    description="Create one AWS Partner Central relationship from the trigger form",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    tags=["partner-central", "manual"],
    default_args={"owner": "partner-data", "retries": 2, "retry_delay": dt.timedelta(seconds=30)},
    params={name: Param(**schema) for name, schema in FORM.items()},
    doc_md=__doc__,
):
    CreateRelationshipOperator(
        task_id="create_relationship",
        aws_conn_id="{{ var.value.get('partner_central_aws_conn_id', 'aws_default') }}",
        # Plain text rendering keeps account ids as strings (leading zeros included); JSON fields travel as JSON.
        **{name: f"{{{{ params.{name} or '' }}}}" for name in FORM if name not in JSON_FIELDS | {"start_date"}},
        **{name: f"{{{{ params.{name} | tojson }}}}" for name in JSON_FIELDS},
        relationship_start_date="{{ params.start_date or '' }}",
    )
