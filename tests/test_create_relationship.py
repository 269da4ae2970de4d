"""The shared create path with one limiter for many calls, and what reaches the logs."""

from __future__ import annotations

import logging

from dev.emulator.service import max_in_any_second
from include.partner_central.hooks import PartnerCentralChannelHook
from include.partner_central.rate_limit import AdaptiveRateLimiter
from include.partner_central.relationship_request import build_create_request
from include.partner_central.retry_policy import RetryPolicy
from tests.conftest import SECRET_KEY
from tests.factories import account, relationship_fields


def test_one_caller_at_the_quota_is_never_throttled(emulator):
    emulator.emulator.configure({"create_rate": 3})
    hook = PartnerCentralChannelHook()
    limiter = AdaptiveRateLimiter(3)
    for n in range(8):
        hook.create_relationship(
            build_create_request(**relationship_fields(associated_account_id=account(n))), limiter=limiter
        )
    calls = emulator.emulator.call_log()
    assert [call["error_code"] for call in calls] == [None] * 8
    assert max_in_any_second([call["started"] for call in calls]) <= 3


def test_tokens_and_credentials_never_reach_the_logs(emulator, caplog):
    # At INFO, the level Airflow runs at. (botocore's own DEBUG logging prints whole request bodies: keep it off.)
    caplog.set_level(logging.INFO)
    emulator.emulator.configure({"lose_next_responses": 1, "fail_next_writes": 1})
    hook = PartnerCentralChannelHook()
    request = build_create_request(**relationship_fields())
    logger = logging.getLogger("test.create")

    hook.create_relationship(
        request, limiter=AdaptiveRateLimiter(50), policy=RetryPolicy(base_seconds=0.01), logger=logger
    )
    hook.create_relationship({**request, "clientToken": "x-token"}, limiter=AdaptiveRateLimiter(50), logger=logger)

    assert "retrying" in caplog.text and "already exists" in caplog.text
    assert request["clientToken"] not in caplog.text
    assert "x-token" not in caplog.text
    assert SECRET_KEY not in caplog.text
