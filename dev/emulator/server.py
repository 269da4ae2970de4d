"""HTTP front of the emulator: the AWS JSON 1.0 protocol, so stock boto3 reaches it through `endpoint_url`.

Besides the API (POST / with X-Amz-Target), and STS's GetCallerIdentity (a form POST, the query protocol), it serves
a small admin interface for tests and people:
GET /_emulator/health, GET /_emulator/calls, GET /_emulator/relationships, GET /_emulator/program-management-accounts,
POST /_emulator/config (JSON of Settings fields, e.g. {"internal_error_rate": 1.0}), POST /_emulator/reset, and
POST /_emulator/program-management-accounts ({"access_key" or "account", "id", "status", ...}: set up one PMA).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import threading
import urllib.parse
from dataclasses import asdict, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from dev.emulator.service import (
    CALLER_IDENTITY,
    ApiFault,
    DropResponse,
    Emulator,
    Settings,
    account_id_for,
    setting_kind,
)
from include.partner_central.service_model import service_model

log = logging.getLogger("partner_central_emulator")
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
# The front door's faults as STS names them.
STS_ERROR_CODES = {
    "UnrecognizedClientException": "InvalidClientTokenId",
    "InvalidSignatureException": "SignatureDoesNotMatch",
    "ExpiredTokenException": "ExpiredToken",
}


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    # The headers and the body go out as two writes: with Nagle's algorithm on, the body waits for the client's
    # delayed ACK of the headers, about 40 ms added to every call beyond the configured latency.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug(format, *args)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"{}")

    def _send(self, status: int, body: Any, content_type: str = "application/x-amz-json-1.0") -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", self.server.next_request_id())
        if isinstance(body, dict) and status >= 400 and "__type" in body:
            self.send_header("x-amzn-ErrorType", body["__type"])
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        emulator = self.server.emulator
        views = {
            "/_emulator/health": lambda: {"status": "ok", "settings": asdict(emulator.settings)},
            "/_emulator/calls": emulator.call_log,
            "/_emulator/relationships": emulator.relationship_list,
            "/_emulator/program-management-accounts": emulator.program_management_account_list,
        }
        view = views.get(self.path.split("?")[0])
        if view is None:
            self._send(404, {"message": f"no such path {self.path}"}, "application/json")
        else:
            self._send(200, view(), "application/json")

    def do_POST(self) -> None:
        form = self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
        if form and not self.path.startswith("/_emulator/"):
            self._sts()
            return
        try:
            body = self._body()
        except ValueError as exc:
            self._send(400, {"__type": "SerializationException", "message": f"request body is not JSON: {exc}"})
            return
        if self.path.startswith("/_emulator/"):
            self._admin(self.path, body)
            return
        target = self.headers.get("X-Amz-Target", "")
        prefix, _, operation = target.partition(".")
        if prefix != self.server.target_prefix:
            self._send(400, {"__type": "UnknownOperationException", "message": f"unknown target {target!r}"})
            return
        match = CREDENTIAL.search(self.headers.get("Authorization", ""))
        if match is None:
            self._send(403, {"__type": "AccessDeniedException", "message": "request is not signed"})
            return
        try:
            response = self.server.emulator.handle(operation, body, match.group(1), self.headers.get("X-Amz-Date"))
        except ApiFault as fault:
            self._send(fault.status, fault.body)
        except DropResponse:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._send(200, response)

    def _sts(self) -> None:
        """STS's GetCallerIdentity in AWS's query protocol (a form in, XML out): a preflight asks who its credentials
        are, through the same endpoint_url as Partner Central's calls."""
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode() if length else "")
        action = form.get("Action", [""])[0]
        match = CREDENTIAL.search(self.headers.get("Authorization", ""))
        if action != CALLER_IDENTITY or match is None:
            self._send_xml(400, _sts_error("InvalidAction", f"action {action!r} is not emulated, or not signed"))
            return
        try:
            identity = self.server.emulator.handle(action, {}, match.group(1), self.headers.get("X-Amz-Date"))
        except ApiFault as fault:
            self._send_xml(fault.status, _sts_error(STS_ERROR_CODES.get(fault.code, fault.code), str(fault)))
            return
        result = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in identity.items())
        self._send_xml(
            200,
            f'<GetCallerIdentityResponse xmlns="{STS_NAMESPACE}"><GetCallerIdentityResult>{result}'
            "</GetCallerIdentityResult></GetCallerIdentityResponse>",
        )

    def _send_xml(self, status: int, body: str) -> None:
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", self.server.next_request_id())
        self.end_headers()
        self.wfile.write(payload)

    def _admin(self, path: str, body: dict[str, Any]) -> None:
        emulator = self.server.emulator
        try:
            if path == "/_emulator/config":
                emulator.configure(body)
            elif path == "/_emulator/reset":
                emulator.reset()
                emulator.configure(body)
            elif path == "/_emulator/program-management-accounts":
                summary = dict(body)
                access_key = summary.pop("access_key", None)
                account = account_id_for(access_key) if access_key else summary.pop("account", None)
                if account is None or "id" not in summary:
                    raise ValueError('a program management account needs "id" and "access_key" (or "account")')
                pma = summary.pop("id")
                self._send(200, emulator.set_program_management_account(account, pma, **summary), "application/json")
                return
            else:
                self._send(404, {"message": f"no such path {path}"}, "application/json")
                return
        except (TypeError, ValueError) as exc:
            self._send(400, {"message": str(exc)}, "application/json")
            return
        self._send(200, {"settings": asdict(emulator.settings)}, "application/json")


def _sts_error(code: str, message: str) -> str:
    return (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}"><Error><Type>Sender</Type><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error></ErrorResponse>"
    )


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, settings: Settings | None = None):
        super().__init__((host, port), _Handler)
        self.emulator = Emulator(settings)
        self.target_prefix = service_model().metadata["targetPrefix"]
        self._request_ids = 0
        self._ids_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def next_request_id(self) -> str:
        with self._ids_lock:
            self._request_ids += 1
            return f"00000000-0000-4000-8000-{self._request_ids:012d}"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="partner-central-emulator", daemon=True)
        thread.start()
        return thread


def parse_args(argv: list[str] | None = None) -> tuple[str, int, Settings]:
    """The CLI: --host, --port and one option per Settings field (--name / --no-name for the switches)."""
    parser = argparse.ArgumentParser(description="Local emulator of the AWS Partner Central Channel API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    for setting in fields(Settings):
        kind, _ = setting_kind(setting)
        flag = f"--{setting.name.replace('_', '-')}"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=setting.default)
        else:
            parser.add_argument(flag, type=kind, default=setting.default)
    args = vars(parser.parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    try:
        return host, port, Settings(**args)
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> None:
    host, port, settings = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = EmulatorServer(host, port, settings)
    log.info(
        "Partner Central Channel emulator listening on %s (settings: %s)", server.url, asdict(server.emulator.settings)
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
