"""ServerConfig: keys from the environment or a file beside the app, never none."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaemail.errors import ConfigurationError
from gaemail.server import ServerConfig, create_app
from gaemail.server.config import parse_key_list, read_key_file


def test_key_file_holds_several_keys_with_comments(tmp_path: Path) -> None:
    (tmp_path / "GMAIL_SECRET_KEY").write_text(
        "# rotated 2026-11\n  new-key  \n\n# keep until every client has the new one\nold-key\n"
    )
    config = ServerConfig.load(tmp_path, {})
    assert config.keys == (b"new-key", b"old-key")


@pytest.mark.parametrize(
    "value", ["new-key old-key", "new-key,old-key", " new-key ,\n old-key ,", "new-key\told-key"]
)
def test_environment_keys_split_on_whitespace_and_commas(value: str) -> None:
    assert parse_key_list(value) == (b"new-key", b"old-key")


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "GMAIL_SECRET_KEY").write_text("file-key\n")
    config = ServerConfig.load(tmp_path, {"GMAIL_SECRET_KEY": "env-key"})
    assert config.keys == (b"env-key",)


def test_default_sender_from_environment_or_file(tmp_path: Path) -> None:
    (tmp_path / "GMAIL_SECRET_KEY").write_text("k\n")
    assert ServerConfig.load(tmp_path, {}).default_sender is None
    (tmp_path / "GMAIL_DEFAULT_SENDER").write_text(
        "# the app's own address\nfile@x.appspotmail.com\n"
    )
    assert ServerConfig.load(tmp_path, {}).default_sender == "file@x.appspotmail.com"
    env = {"GMAIL_DEFAULT_SENDER": "env@x.appspotmail.com"}
    assert ServerConfig.load(tmp_path, env).default_sender == "env@x.appspotmail.com"


@pytest.mark.parametrize("file_text", [None, "", "# only a comment\n\n"])
def test_no_key_refuses_to_start(tmp_path: Path, file_text: str | None) -> None:
    if file_text is not None:
        (tmp_path / "GMAIL_SECRET_KEY").write_text(file_text)
    with pytest.raises(ConfigurationError, match=r"no signing key configured.*GMAIL_SECRET_KEY"):
        ServerConfig.load(tmp_path, {"GMAIL_SECRET_KEY": " , "})


def test_create_app_without_config_reads_the_environment_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GMAIL_SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError):
        create_app()
    monkeypatch.setenv("GMAIL_SECRET_KEY", "from-env")
    assert create_app().test_client().get("/").status_code == 200


def test_keys_never_appear_in_repr() -> None:
    config = ServerConfig(keys=(b"very-secret-value",), default_sender="a@b")
    assert "very-secret-value" not in repr(config)


def test_unreadable_key_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "GMAIL_SECRET_KEY").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ConfigurationError, match="GMAIL_SECRET_KEY: not UTF-8"):
        ServerConfig.load(tmp_path, {})
    with pytest.raises(ConfigurationError, match="no such file"):
        read_key_file(tmp_path / "missing")


def test_max_recipients_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_recipients"):
        ServerConfig(keys=(b"k",), max_recipients=0)


@pytest.mark.parametrize(
    ("value", "enabled"), [("off", False), ("0", False), ("no", False), ("", True), ("on", True)]
)
def test_v1_can_be_switched_off_by_the_environment(value: str, enabled: bool) -> None:
    config = ServerConfig.load(None, {"GMAIL_SECRET_KEY": "k", "GAEMAIL_V1": value})
    assert config.v1_enabled is enabled
    assert config.v1_fix_sender is True
    unsigned_off = {"GMAIL_SECRET_KEY": "k", "GAEMAIL_V1_FIX_SENDER": "off"}
    assert ServerConfig.load(None, unsigned_off).v1_fix_sender is False


def test_limits_and_windows_are_checked() -> None:
    from gaemail.server.config import Limits

    with pytest.raises(ConfigurationError, match="max_params"):
        Limits(max_params=0)
    with pytest.raises(ConfigurationError, match="idempotency_seconds"):
        ServerConfig(keys=(b"k",), idempotency_seconds=60)
    with pytest.raises(ConfigurationError, match="timestamp_window"):
        ServerConfig(keys=(b"k",), timestamp_window=0)


def test_limits_and_max_recipients_from_the_environment() -> None:
    environ = {
        "GMAIL_SECRET_KEY": "k",
        "GAEMAIL_LIMITS": "max_header_bytes=524288, max_recipients=3\tmax_parsed_lines=20000",
    }
    config = ServerConfig.load(None, environ)
    assert config.limits.max_header_bytes == 524288
    assert config.limits.max_parsed_lines == 20000
    assert config.limits.max_depth == 20  # not named: the default
    assert config.max_recipients == 3


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("max_depht=3", "no limit is called 'max_depht'; the limits are max_header_bytes"),
        ("max_depth=three", "max_depth must be a whole number"),
        ("max_depth", "'max_depth' is not of the form name=value"),
        ("max_depth=0", "max_depth must be at least 1"),
        ("max_recipients=0", "max_recipients must be at least 1"),
    ],
)
def test_a_bad_limits_setting_refuses_to_start_naming_it(value: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ServerConfig.load(None, {"GMAIL_SECRET_KEY": "k", "GAEMAIL_LIMITS": value})
    assert reason in str(caught.value)


def test_principals_from_the_environment_name_known_key_ids() -> None:
    from gaemail.protocol import v2

    old, new = v2.key_id(b"old-key"), v2.key_id(b"new-key")
    environ = {"GMAIL_SECRET_KEY": "old-key new-key", "GAEMAIL_PRINCIPALS": f"{old}=ops {new}=ops"}
    assert ServerConfig.load(None, environ).principals == ((old, "ops"), (new, "ops"))
    with pytest.raises(ConfigurationError, match="none of the signing keys has") as caught:
        ServerConfig.load(None, {**environ, "GAEMAIL_PRINCIPALS": "k0000000000=ops"})
    assert "old-key" not in str(caught.value)
