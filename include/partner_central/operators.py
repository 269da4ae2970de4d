"""Operator that creates one AWS Partner Central relationship, exactly once."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.partner_central.api_errors import ApiError
from include.partner_central.hooks import PartnerCentralChannelHook
from include.partner_central.lineage import operator_lineage, relationships_dataset
from include.partner_central.rate_limit import (
    DEFAULT_WRITES_PER_SECOND,
    AdaptiveRateLimiter,
)
from include.partner_central.relationship_request import build_create_request
from include.partner_central.retry_policy import RetryPolicy
from include.partner_central.service_model import snake_case
from include.vocabulary import REQUEST_FIELDS

JSON_FIELDS = ("tags", "requested_support_plan")


def _from_json_text(name: str, value: Any) -> Any:
    """Templated JSON fields arrive as text ("null", '{"team": "x"}'); dicts and lists pass through."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value) if value.strip() else None
    except ValueError as exc:
        raise AirflowFailException(f"{name} is not valid JSON ({exc}): {value[:80]!r}") from None


# BaseOperator already has `start_date` (when the task may first run), so the API's startDate is spelled
# `relationship_start_date` here.
RENAMED_FIELDS = {"relationship_start_date": "start_date"}
REQUEST_ARGUMENTS = tuple(
    {field: argument for argument, field in RENAMED_FIELDS.items()}.get(snake_case(name), snake_case(name))
    for name in REQUEST_FIELDS
)


class _PacedWriteOperator(AwsBaseOperator[PartnerCentralChannelHook]):
    """What the three write operators share: the hook, the rate, the retry budget, and how a failed call fails the
    task (a final answer at once, since task retries would not change it; the account's problem with its fix)."""

    aws_hook_class = PartnerCentralChannelHook
    ui_color = "#f8e8d0"
    operation = ""

    def __init__(
        self,
        *,
        rate_per_second: float = DEFAULT_WRITES_PER_SECOND,
        max_attempts: int = RetryPolicy.max_attempts,
        max_retry_seconds: float = RetryPolicy.max_seconds,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rate_per_second = rate_per_second
        self.max_attempts = max_attempts
        self.max_retry_seconds = max_retry_seconds

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: this task wrote Partner Central's relationships (called by the OpenLineage provider)."""
        return operator_lineage(outputs=[relationships_dataset(self.hook.region_name)])

    def call(self, method: Callable[..., Any], request: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Send the request the operator builds (`request`, rendered fields) through one hook method, paced and
        retried; its result as a dict."""
        try:
            result = method(
                request(),
                limiter=AdaptiveRateLimiter(self.rate_per_second),
                policy=RetryPolicy(max_attempts=self.max_attempts, max_seconds=self.max_retry_seconds),
                logger=self.log,
            )
        except ApiError as error:
            message = f"{self.operation} failed after {error.attempts} attempt(s): {error}"
            if error.fix:
                message += f". Fix: {error.fix}"
            raise (AirflowException if error.retryable else AirflowFailException)(message) from None
        except ValueError as error:  # a request the hook refuses before any call (nothing to change): the DAG's
            raise AirflowFailException(f"{self.operation}: {error}") from None
        return result.as_dict()


class CreateRelationshipOperator(_PacedWriteOperator):
    """
    Create a relationship in AWS Partner Central (CreateRelationship), exactly once.

    Every request field of the API is a templated argument. The clientToken is derived from the relationship's
    identity unless given, so task retries, re-runs and backfills send the same token. Retries happen once, here
    (tenacity, full jitter); a ConflictException is resolved by looking the relationship up.

    Returns ``{"status": "created" | "already_exists", "relationship_id", "relationship_arn", "attempts"}``.

    :param rate_per_second: the most CreateRelationship calls this task sends per second. The quota is per AWS
        account; tasks that run side by side should share it through a pool (see the sync DAG).
    :param max_attempts: attempts per call, first included.
    :param max_retry_seconds: the longest time spent retrying one call.
    """

    operation = "CreateRelationship"
    # Every request field of the model, as an argument (snake_case; startDate renamed, see RENAMED_FIELDS).
    template_fields: Sequence[str] = aws_template_fields(*REQUEST_ARGUMENTS)
    template_fields_renderers = {"tags": "json", "requested_support_plan": "json"}

    def __init__(
        self,
        *,
        catalog: str,
        association_type: str,
        program_management_account_identifier: str,
        display_name: str,
        sector: str,
        associated_account_id: str | None = None,
        resale_account_model: str | None = None,
        client_token: str | None = None,
        tags: dict[str, str] | list[dict[str, str]] | None = None,
        requested_support_plan: dict[str, Any] | None = None,
        account_scope: str | None = None,
        relationship_start_date: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.catalog = catalog
        self.association_type = association_type
        self.program_management_account_identifier = program_management_account_identifier
        self.display_name = display_name
        self.sector = sector
        self.associated_account_id = associated_account_id
        self.resale_account_model = resale_account_model
        self.client_token = client_token
        self.tags = tags
        self.requested_support_plan = requested_support_plan  # a dict, or its JSON text (from a template)
        self.account_scope = account_scope
        self.relationship_start_date = relationship_start_date

    def request(self) -> dict[str, Any]:
        fields = {
            RENAMED_FIELDS.get(name, name): getattr(self, name)
            for name in self.template_fields
            if name not in ("aws_conn_id", "region_name", "verify")
        }
        for name in JSON_FIELDS:
            fields[name] = _from_json_text(name, fields[name])
        return build_create_request(**fields)

    def execute(self, context: Any) -> dict[str, Any]:
        return self.call(self.hook.create_relationship, self.request)


class UpdateRelationshipOperator(_PacedWriteOperator):
    """
    Change a relationship's display name or support plan (UpdateRelationship), exactly once.

    Guarded by ``revision`` when given: a relationship changed since is read again, and the update is found already
    made (a retry after a lost response) or sent once more at the current revision. Retries happen once, here.

    Returns ``{"status": "updated" | "already_updated", "relationship_id", "revision", "attempts"}``.

    :param identifier: the relationship's id (``rs-...``) or ARN.
    :param revision: the revision this change was decided on (GetRelationship's, or the sync's record of it).
    :param display_name: the new display name.
    :param requested_support_plan: the new support plan (a dict, or its JSON text from a template).
    :param rate_per_second: the most UpdateRelationship calls this task sends per second.
    :param max_attempts: attempts per call, first included.
    :param max_retry_seconds: the longest time spent retrying one call.
    """

    operation = "UpdateRelationship"
    template_fields: Sequence[str] = aws_template_fields(
        "catalog",
        "program_management_account_identifier",
        "identifier",
        "revision",
        "display_name",
        "requested_support_plan",
    )
    template_fields_renderers = {"requested_support_plan": "json"}

    def __init__(
        self,
        *,
        catalog: str,
        program_management_account_identifier: str,
        identifier: str,
        revision: str | None = None,
        display_name: str | None = None,
        requested_support_plan: dict[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.catalog = catalog
        self.program_management_account_identifier = program_management_account_identifier
        self.identifier = identifier
        self.revision = revision
        self.display_name = display_name
        self.requested_support_plan = requested_support_plan

    def request(self) -> dict[str, Any]:
        fields = {
            "catalog": self.catalog,
            "programManagementAccountIdentifier": self.program_management_account_identifier,
            "identifier": self.identifier,
            "revision": None if self.revision in (None, "") else str(self.revision),
            "displayName": self.display_name or None,
            "requestedSupportPlan": _from_json_text("requested_support_plan", self.requested_support_plan),
        }
        return {name: value for name, value in fields.items() if value is not None}

    def execute(self, context: Any) -> dict[str, Any]:
        return self.call(self.hook.update_relationship, self.request)


class DeleteRelationshipOperator(_PacedWriteOperator):
    """
    Delete a relationship (DeleteRelationship), exactly once.

    The clientToken is derived from the relationship unless given, so task retries and re-runs send the same delete;
    a relationship already gone is ``already_deleted``, not a failure.

    Returns ``{"status": "deleted" | "already_deleted", "relationship_id", "revision": None, "attempts"}``.

    :param identifier: the relationship's id (``rs-...``) or ARN.
    :param client_token: the delete's idempotency token (default: derived from the relationship id).
    :param rate_per_second: the most DeleteRelationship calls this task sends per second.
    :param max_attempts: attempts per call, first included.
    :param max_retry_seconds: the longest time spent retrying one call.
    """

    operation = "DeleteRelationship"
    template_fields: Sequence[str] = aws_template_fields(
        "catalog", "program_management_account_identifier", "identifier", "client_token"
    )

    def __init__(
        self,
        *,
        catalog: str,
        program_management_account_identifier: str,
        identifier: str,
        client_token: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.catalog = catalog
        self.program_management_account_identifier = program_management_account_identifier
        self.identifier = identifier
        self.client_token = client_token

    def request(self) -> dict[str, Any]:
        request = {
            "catalog": self.catalog,
            "programManagementAccountIdentifier": self.program_management_account_identifier,
            "identifier": self.identifier,
        }
        if self.client_token:
            request["clientToken"] = self.client_token
        return request

    def execute(self, context: Any) -> dict[str, Any]:
        return self.call(self.hook.delete_relationship, self.request)
