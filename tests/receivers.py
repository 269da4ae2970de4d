"""Real receivers of the alerts, on this machine: an SMTP server (aiosmtpd), an HTTP endpoint that records Slack
incoming-webhook posts as Slack would receive them, and Amazon SNS (moto's server) with an SQS queue subscribed to
the topic, from which what was published is read back. Each gives the Airflow connection that points at it."""

from __future__ import annotations

import email
import email.policy
import html
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dev.local_stack.databases import free_port

# An incoming webhook's path, shaped like Slack's (/services/<team>/<channel>/<secret>).
SLACK_WEBHOOK_PATH = "/services/T0RECEIVER/B0RECEIVER/local-receiver-secret"

AWS_TESTING = {"login": "testing", "password": "testing"}
REGION = "us-east-1"


class SmtpReceiver:
    """An SMTP server (aiosmtpd) keeping every message it is given."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def connection(self, from_email: str = "partner-sync@example.com") -> dict[str, Any]:
        return {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": self.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": from_email, "retry_limit": 1},
        }

    def texts(self) -> list[tuple[str, str]]:
        """(subject, body as a reader sees it: the HTML's text) of each message."""
        return [
            (m["Subject"], html.unescape(re.sub(r"<[^>]+>", "", m.get_body(("html", "plain")).get_content())))
            for m in self.messages
        ]


class SlackReceiver:
    """An HTTP endpoint that records the JSON posted to it, as a Slack incoming webhook would receive it."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{SLACK_WEBHOOK_PATH}"

    def start(self) -> SlackReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def connection(self) -> dict[str, Any]:
        return {"conn_type": "slackwebhook", "password": self.url}


class SnsReceiver:
    """Amazon SNS as moto's server answers it: a topic, and an SQS queue subscribed to it to read what was
    published."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self.topic_arn = ""
        self._queue_url = ""

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=AWS_TESTING["login"],
            aws_secret_access_key=AWS_TESTING["password"],
        )

    def start(self) -> SnsReceiver:
        self._server.start()
        sns, sqs = self.client("sns"), self.client("sqs")
        self.topic_arn = sns.create_topic(Name="partner-sync-alerts")["TopicArn"]
        self._queue_url = sqs.create_queue(QueueName="partner-sync-alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn["QueueArn"])
        return self

    def stop(self) -> None:
        self._server.stop()

    def connection(self) -> dict[str, Any]:
        return {"conn_type": "aws", **AWS_TESTING, "extra": {"endpoint_url": self.endpoint, "region_name": REGION}}

    def messages(self) -> list[dict[str, Any]]:
        """Every notification published so far (Subject, Message), as the subscribed queue received them."""
        sqs = self.client("sqs")
        found = []
        while True:
            batch = sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])


def drain(receivers: tuple[SmtpReceiver, SlackReceiver, SnsReceiver]) -> list[tuple[str, str]]:
    """(subject, text) of every alert each receiver got since the last look, email first, then Slack, then SNS."""
    smtp, slack, sns = receivers
    posts = [tuple(post["text"].split("\n", 1)) for post in slack.posts]
    got = [
        *smtp.texts(),
        *((subject.strip("*"), text) for subject, text in posts),
        *((message["Subject"], message["Message"]) for message in sns.messages()),
    ]
    smtp.messages.clear()
    slack.posts.clear()
    return got
