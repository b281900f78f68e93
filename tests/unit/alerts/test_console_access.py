"""Console access rules: hashed passwords, roles, the API token as a planner's login, CSRF tokens, bad config."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from alerts.web.auth import Access, csrf_ok, csrf_token, hash_password, verify_password
from alerts.web.data import scrub
from vigil.config import AlertConfig


def config(**kw: object) -> AlertConfig:
    return AlertConfig.model_validate(kw)


def test_a_password_is_stored_salted_and_verified() -> None:
    a, b = hash_password("s3cret-pass", n=2**10), hash_password("s3cret-pass", n=2**10)
    assert a != b and "s3cret-pass" not in a, "salted, never the password itself"
    assert verify_password("s3cret-pass", a) and not verify_password("s3cret-pasS", a)
    assert not verify_password("s3cret-pass", "scrypt$1$1$1$AAAA$AAAA"), "a malformed hash verifies nothing"


def test_users_log_in_with_their_role_and_the_token_as_a_planner() -> None:
    access = Access(
        config(
            api_token="tok-123",
            users=[
                {"name": "Vera", "role": "viewer", "password_hash": hash_password("pw-vera", n=2**10)},
                {"name": "Ann", "password_hash": hash_password("pw-ann", n=2**10)},
            ],
        )
    )
    assert not access.open
    vera = access.login("Vera", "pw-vera")
    assert vera is not None and vera.role == "viewer" and not vera.can_change
    ann = access.login("Ann", "pw-ann")
    assert ann is not None and ann.can_change
    assert access.login("Vera", "tok-123") is None, "a configured user logs in with their own password only"
    fred = access.login("Fred", "tok-123")
    assert fred is not None and (fred.name, fred.role) == ("Fred", "planner")
    assert access.login("Fred", "tok-12") is None and access.login("", "tok-123") is None
    assert access.current({}) is None, "no session: nobody"
    assert access.current({"user": "Vera", "role": "viewer"}) == vera


def test_without_token_and_users_the_console_is_open_as_the_api_is() -> None:
    access = Access(config())
    login = access.current({})
    assert access.open and login is not None and login.can_change


def test_csrf_tokens_belong_to_their_session() -> None:
    session: dict[str, object] = {}
    token = csrf_token(session)
    assert csrf_token(session) == token, "stable within a session"
    assert csrf_ok(session, token)
    assert not csrf_ok(session, None) and not csrf_ok(session, token + "x") and not csrf_ok({}, token)
    assert not csrf_ok({"csrf": csrf_token({})}, token), "another session's token"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"users": [{"name": "Ann", "password_hash": "plain-text"}]}, "users.0.password_hash"),
        (
            {"users": [{"name": "Ann", "password_hash": hash_password("x" * 8, n=2**10), "role": "boss"}]},
            "users.0.role",
        ),
        ({"session_secret": "short"}, "session_secret"),
    ],
)
def test_a_bad_console_setting_is_refused_naming_the_key(settings: dict[str, object], key: str) -> None:
    with pytest.raises(ValidationError) as info:
        config(**settings)
    assert key in str(info.value)


def test_delivery_errors_are_shown_without_addresses() -> None:
    text = "HTTP 404 from https://hooks.slack.com/services/T000/B000/XXXXSECRET: not found"
    assert "SECRET" not in scrub(text) and "HTTP 404" in scrub(text)


def test_the_session_secret_is_never_in_the_configs_repr() -> None:
    c = config(session_secret="y" * 40)
    assert isinstance(c.session_secret, SecretStr) and "y" * 40 not in repr(c)


def test_the_service_refuses_a_bad_console_setting_at_start_up_naming_it() -> None:
    from vigil.config import load_config
    from vigil.exceptions import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(environ={"VIGIL_ALERTS__SESSION_SECRET": "too-short"})
    assert "alerts" in str(info.value) and "session_secret" in str(info.value)
    assert "too-short" not in str(info.value), "the secret itself is not repeated in the error"
