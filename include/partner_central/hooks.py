"""Hook for AWS Partner Central Channel, in the Amazon provider's style (SqsHook): the boto3 client
("partnercentral-channel") with this project's botocore config, and the API methods the operator and the sync call."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config

from include.partner_central import create_relationship as create_path
from include.partner_central import paced_call
from include.partner_central import relationship_changes as change_path
from include.partner_central.api_errors import ApiError
from include.partner_central.rate_limit import RateLimiter
from include.partner_central.relationship_request import tag_list
from include.partner_central.retry_policy import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, RetryPolicy

# Timeouts unless the connection's botocore config says otherwise: a hung call must not hold a pool slot forever.
DEFAULT_CONFIG = Config(connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)
# Always: botocore does not retry; tenacity does (include.partner_central.retry_policy), so attempts never multiply.
NO_BOTOCORE_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
# The service has one global endpoint; botocore still needs a region to sign with.
DEFAULT_REGION = "us-east-1"


class PartnerCentralChannelHook(AwsBaseHook):
    """
    Interact with AWS Partner Central Channel.

    Provide thin wrapper around :external+boto3:py:class:`boto3.client("partnercentral-channel")`, whose botocore
    config always turns botocore's own retries off and bounds each attempt (connect and read timeouts). Call the API
    through the methods below, not through a client of your own: a stock client would bring botocore's hidden
    retries back. Additional arguments (``aws_conn_id``, ``region_name``, ``verify``, ``config``) are passed down to
    AwsBaseHook; ``endpoint_url`` comes from the connection's extra, as for every AWS hook.

    .. seealso::
        - :class:`airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "partnercentral-channel"
        super().__init__(*args, **kwargs)

    @property
    def region_name(self) -> str:
        return super().region_name or DEFAULT_REGION

    @property
    def config(self) -> Config:
        return DEFAULT_CONFIG.merge(super().config).merge(NO_BOTOCORE_RETRIES)

    def create_relationship(
        self,
        request: Mapping[str, Any],
        *,
        limiter: RateLimiter,
        policy: RetryPolicy = create_path.DEFAULT_POLICY,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> create_path.CreateResult:
        """
        Create one relationship exactly once (CreateRelationship): paced by ``limiter``, retried by ``policy``, and
        on a ConflictException the existing relationship is looked up and returned as ``already_exists``.

        .. seealso::
            - :func:`include.partner_central.create_relationship.create_relationship`

        :param request: the CreateRelationship request, with its ``clientToken``
            (:func:`include.partner_central.relationship_request.build_create_request` builds one).
        :param limiter: the rate limiter every call of this quota goes through.
        :param policy: retries (attempts, time budget, backoff).
        :param logger: where attempts and outcomes are logged (default: the hook's logger).
        :return: the outcome: status (``created`` or ``already_exists``), relationship id and ARN, attempts.
        :raises ApiError: when the relationship can be neither created nor found.
        """
        return create_path.create_relationship(
            self.conn, request, limiter=limiter, policy=policy, logger=logger or self.log
        )

    def get_relationship(
        self, *, catalog: str, program_management_account_identifier: str, identifier: str
    ) -> dict[str, Any]:
        """
        One relationship (GetRelationship).

        .. seealso::
            - :external+boto3:py:meth:`PartnerCentralChannel.Client.get_relationship`

        :param catalog: ``AWS`` or ``Sandbox``.
        :param program_management_account_identifier: the program management account's id or ARN.
        :param identifier: the relationship's id or ARN.
        :return: its ``relationshipDetail``.
        """
        response = self.conn.get_relationship(
            catalog=catalog,
            programManagementAccountIdentifier=program_management_account_identifier,
            identifier=identifier,
        )
        return response["relationshipDetail"]

    def list_relationships(
        self,
        *,
        catalog: str,
        associated_account_ids: list[str] | None = None,
        association_types: list[str] | None = None,
        display_names: list[str] | None = None,
        program_management_account_identifiers: list[str] | None = None,
        sort: dict[str, str] | None = None,
        page_size: int | None = None,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy = create_path.DEFAULT_POLICY,
    ) -> list[dict[str, Any]]:
        """
        Every relationship that matches the filters (ListRelationships, page after page through the model's
        paginator).

        .. seealso::
            - :external+boto3:py:meth:`PartnerCentralChannel.Client.list_relationships`

        :param catalog: ``AWS`` or ``Sandbox``.
        :param associated_account_ids: only these associated accounts.
        :param association_types: only these association types.
        :param display_names: only these display names.
        :param program_management_account_identifiers: only these program management accounts (ids or ARNs).
        :param sort: ``{"sortBy": "UpdatedAt", "sortOrder": "Ascending" | "Descending"}``.
        :param page_size: relationships per call (``maxResults``); default: the service's.
        :param limiter: paces the calls (a long listing must stay within the account's read quota); default: none.
        :param policy: retries of each page.
        :return: the relationship summaries, as dicts.
        """
        filters = {
            "catalog": catalog,
            "associatedAccountIds": associated_account_ids,
            "associationTypes": association_types,
            "displayNames": display_names,
            "programManagementAccountIdentifiers": program_management_account_identifiers,
            "sort": sort,
            "maxResults": page_size,
        }
        pruned = {name: value for name, value in filters.items() if value is not None}
        listing = paced_call.pages(self.conn, "ListRelationships", pruned, policy=policy, limiter=limiter)
        return [item for page in listing for item in page.get("items", [])]

    def update_relationship(
        self,
        request: Mapping[str, Any],
        *,
        limiter: RateLimiter,
        policy: RetryPolicy = change_path.DEFAULT_POLICY,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> change_path.ChangeResult:
        """
        Change a relationship's display name or support plan exactly once (UpdateRelationship), guarded by its
        ``revision``: on a ConflictException the relationship is read again, and the update is either found already
        made (``already_updated``: a lost response's retry) or sent once more at the current revision.

        .. seealso::
            - :func:`include.partner_central.relationship_changes.update_relationship`

        :param request: the UpdateRelationship request (``catalog``, ``identifier``,
            ``programManagementAccountIdentifier``, ``revision``, ``displayName`` and/or ``requestedSupportPlan``).
        :param limiter: the rate limiter every update of this account goes through.
        :param policy: retries (attempts, time budget, backoff).
        :param logger: where attempts and outcomes are logged (default: the hook's logger).
        :return: status (``updated`` or ``already_updated``), relationship id, its new revision, attempts.
        :raises ApiError: when the update can be neither made nor found made.
        """
        return change_path.update_relationship(
            self.conn, request, limiter=limiter, policy=policy, logger=logger or self.log
        )

    def delete_relationship(
        self,
        request: Mapping[str, Any],
        *,
        limiter: RateLimiter,
        policy: RetryPolicy = change_path.DEFAULT_POLICY,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> change_path.ChangeResult:
        """
        Delete a relationship exactly once (DeleteRelationship), with a clientToken derived from the relationship
        unless the request has one; a relationship already gone is ``already_deleted``.

        .. seealso::
            - :func:`include.partner_central.relationship_changes.delete_relationship`

        :param request: the DeleteRelationship request (``catalog``, ``identifier``,
            ``programManagementAccountIdentifier``, optional ``clientToken``).
        :param limiter: the rate limiter every delete of this account goes through.
        :param policy: retries (attempts, time budget, backoff).
        :param logger: where attempts and outcomes are logged (default: the hook's logger).
        :return: status (``deleted`` or ``already_deleted``), relationship id, attempts.
        :raises ApiError: when the relationship can be neither deleted nor found gone.
        """
        return change_path.delete_relationship(
            self.conn, request, limiter=limiter, policy=policy, logger=logger or self.log
        )

    def tag_resource(
        self, resource_arn: str, tags: Mapping[str, str], *, policy: RetryPolicy = change_path.DEFAULT_POLICY
    ) -> None:
        """
        Add or overwrite tags on a relationship (TagResource; the same call twice leaves the same tags).

        :param resource_arn: the relationship's ARN.
        :param tags: key → value.
        """
        policy.call(lambda: self.conn.tag_resource(resourceArn=resource_arn, tags=tag_list(tags)))

    def untag_resource(
        self, resource_arn: str, tag_keys: list[str], *, policy: RetryPolicy = change_path.DEFAULT_POLICY
    ) -> None:
        """
        Remove tags from a relationship (UntagResource; keys it does not have are ignored).

        :param resource_arn: the relationship's ARN.
        :param tag_keys: the keys to remove.
        """
        policy.call(lambda: self.conn.untag_resource(resourceArn=resource_arn, tagKeys=list(tag_keys)))

    def list_tags_for_resource(
        self, resource_arn: str, *, policy: RetryPolicy = change_path.DEFAULT_POLICY
    ) -> dict[str, str]:
        """
        A relationship's tags (ListTagsForResource), as key → value.

        :param resource_arn: the relationship's ARN.
        """
        response = policy.call(lambda: self.conn.list_tags_for_resource(resourceArn=resource_arn))
        return {tag["key"]: tag["value"] for tag in response.get("tags", [])}

    def list_program_management_accounts(
        self,
        *,
        catalog: str,
        statuses: list[str] | None = None,
        page_size: int | None = None,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy = change_path.DEFAULT_POLICY,
    ) -> list[dict[str, Any]]:
        """
        The program management accounts of the caller's account (ListProgramManagementAccounts, every page).

        :param catalog: ``AWS`` or ``Sandbox``.
        :param statuses: only these statuses (``PENDING``, ``ACTIVE``, ``INACTIVE``).
        :param page_size: accounts per call (``maxResults``); default: the service's.
        :param limiter: paces the calls; default: none.
        :param policy: retries of each page.
        :return: their summaries: id, arn, status, program, type, revision, dates.
        """
        filters = {"catalog": catalog, "statuses": statuses, "maxResults": page_size}
        pruned = {name: value for name, value in filters.items() if value is not None}
        listing = paced_call.pages(self.conn, "ListProgramManagementAccounts", pruned, policy=policy, limiter=limiter)
        return [item for page in listing for item in page.get("items", [])]

    def caller_identity(self, *, policy: RetryPolicy = change_path.DEFAULT_POLICY) -> dict[str, str]:
        """
        Who the connection's credentials are (STS GetCallerIdentity, which needs no permission): a preflight's first
        check, before any Partner Central call.

        :return: ``Account``, ``Arn`` and ``UserId``.
        :raises ApiError: credentials missing, expired or not valid (``fix`` says what to do).
        """
        sts = self.get_session(region_name=self.region_name).client(
            "sts", endpoint_url=self.conn_config.get_service_endpoint_url("sts"), config=self.config, verify=self.verify
        )
        response = policy.call(lambda: sts.get_caller_identity())
        return {name: response[name] for name in ("Account", "Arn", "UserId")}

    def probe(
        self, operation: str, request: Mapping[str, Any], *, limiter: RateLimiter, policy: RetryPolicy
    ) -> ApiError | None:
        """
        Send one request that cannot change anything (it names a relationship that does not exist, or breaks the
        model's constraints) and return how the API refused it: AccessDeniedException when the caller's policy
        does not allow the operation, a ValidationException or ResourceNotFoundException when it does. The request
        leaves as given: this client does not validate it first.

        :param operation: the operation, as the model names it (``CreateRelationship``).
        :param request: its request, made to be refused.
        :param limiter: the operation's rate limiter (a probe counts against the quota like any call).
        :param policy: retries of throttling and server errors.
        :return: the API's refusal, or None if it answered as if it had done something (a request not made to be
            refused: the caller's mistake).
        """
        client = self.get_client_type(config=self.config.merge(Config(parameter_validation=False)))
        try:
            policy.call(lambda: paced_call.send_paced(client, operation, request, limiter))
        except ApiError as refused:
            return refused
        return None
