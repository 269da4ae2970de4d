"""Hook for AWS Partner Central Channel, a thin wrapper around boto3.client("partnercentral-channel")."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.config import Config

from include.partner_central.retry_policy import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS

# Timeouts unless the connection's botocore config says otherwise: a hung call must not hold a pool slot forever.
DEFAULT_CONFIG = Config(connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)
# Always: botocore does not retry; tenacity does (include.partner_central.retry_policy), so attempts never multiply.
NO_BOTOCORE_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
# The service has one global endpoint; botocore still needs a region to sign with.
DEFAULT_REGION = "us-east-1"


class PartnerCentralChannelHook(AwsBaseHook):
    """
    Interact with AWS Partner Central Channel.

    Provide thin wrapper around :external+boto3:py:class:`boto3.client("partnercentral-channel")`.
    Additional arguments (``aws_conn_id``, ``region_name``, ``verify``, ``config``) are passed down to
    AwsBaseHook; ``endpoint_url`` comes from the connection's extra, as for every AWS hook.
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
