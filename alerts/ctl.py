"""``vigil alert``: acknowledge, assign, list and silence alerts through the running alerts service's HTTP API.

    vigil alert list
    vigil alert ack PMP-001.failure_risk.20261126T101000Z --by "A. Planner" [--note "parts ordered"]
    vigil alert assign PMP-001.failure_risk.20261126T101000Z --to "B. Fitter" --by "A. Planner"
    vigil alert silence --machine PMP-001 --hours 8 --by "A. Planner" --comment "bearing change"
    vigil alert unsilence sil-0123456789
    vigil alert line-down north-1 | line-up north-1
    vigil alert hash-password            the password_hash of an [[alerts.users]] console login (asks twice)

The API address is ``--url``, else ``alerts.public_url``, else ``http://<alerts.http_host>:<alerts.http_port>``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.config import load_config
from vigil.exceptions import ConfigError


def _call(
    url: str, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url.rstrip('/')}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vigil alert", description="acknowledge, assign and silence alerts")
    parser.add_argument("--url", help="alerts service API (default from the configuration)")
    parser.add_argument("--config", help="plant configuration (for the API address and alerts.api_token)")
    parser.add_argument("--token", help="API token (default: alerts.api_token, e.g. from VIGIL_ALERTS__API_TOKEN)")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="open alert episodes")
    ack = sub.add_parser("ack", help="acknowledge an alert (stops escalation and reminders)")
    ack.add_argument("alert_id")
    ack.add_argument("--by", required=True)
    ack.add_argument("--note")
    assign = sub.add_parser("assign", help="assign an alert to someone")
    assign.add_argument("alert_id")
    assign.add_argument("--to", required=True)
    assign.add_argument("--by", required=True)
    silence = sub.add_parser("silence", help="silence alerts during planned maintenance")
    silence.add_argument("--machine", action="append", default=[])
    silence.add_argument("--line", action="append", default=[])
    silence.add_argument("--site", action="append", default=[])
    silence.add_argument("--hours", type=float, default=8.0, help="duration from now (default 8)")
    silence.add_argument("--by", required=True)
    silence.add_argument("--comment", default="")
    unsilence = sub.add_parser("unsilence", help="end a silence")
    unsilence.add_argument("silence_id")
    sub.add_parser("hash-password", help="print the password_hash for an [[alerts.users]] console login")
    for name in ("line-down", "line-up"):
        sub.add_parser(name, help=f"{name.replace('-', ' ')}: inhibit/allow the line's alerts").add_argument("line")
    return parser


def _request(args: argparse.Namespace, now: datetime) -> tuple[str, str, dict[str, Any] | None]:
    if args.action == "list":
        return "GET", "/alerts", None
    if args.action == "ack":
        return "POST", f"/alerts/{args.alert_id}/ack", {"by": args.by, "note": args.note}
    if args.action == "assign":
        return "POST", f"/alerts/{args.alert_id}/assign", {"to": args.to, "by": args.by}
    if args.action == "silence":
        body = {
            "machines": args.machine,
            "lines": args.line,
            "sites": args.site,
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(hours=args.hours)).isoformat(),
            "created_by": args.by,
            "comment": args.comment,
        }
        return "POST", "/silences", body
    if args.action == "unsilence":
        return "DELETE", f"/silences/{args.silence_id}", None
    return "POST", f"/lines/{args.line}/{'down' if args.action == 'line-down' else 'up'}", None


def _hash_password() -> int:
    import getpass

    from alerts.web.auth import hash_password

    password = getpass.getpass("password: ")
    if len(password) < 8 or password != getpass.getpass("again: "):
        print("vigil alert: passwords differ or shorter than 8 characters", file=sys.stderr)  # noqa: T201
        return 1
    print(hash_password(password))  # noqa: T201
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.action == "hash-password":
        return _hash_password()
    url, token = args.url, args.token
    if url is None or token is None:
        try:
            alerts = load_config(args.config).alerts
        except ConfigError as exc:
            print(exc, file=sys.stderr)  # noqa: T201
            return 2
        url = url or alerts.public_url or f"http://{alerts.http_host}:{alerts.http_port}"
        if token is None and alerts.api_token is not None:
            token = alerts.api_token.get_secret_value()
    method, path, body = _request(args, datetime.now(UTC))
    try:
        status, answer = _call(url, method, path, body, token)
    except (urllib.error.URLError, OSError) as exc:
        print(  # noqa: T201
            f"vigil alert: the alerts service does not answer at {url} ({exc}); is `vigil alerts` running?",
            file=sys.stderr,
        )
        return 1
    if status >= 400:
        print(f"vigil alert: {answer.get('error') if isinstance(answer, dict) else answer}", file=sys.stderr)  # noqa: T201
        return 1
    if args.action == "list":
        for a in answer:
            print(f"{a['alert_id']:<48} {a['severity']:<8} {a['state']:<12} {a['summary']}")  # noqa: T201
        if not answer:
            print("no open alerts")  # noqa: T201
    else:
        print(json.dumps(answer))  # noqa: T201
    return 0
