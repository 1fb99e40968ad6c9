"""Settings: flag > environment > envdir file > default, with provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaemail.config import Settings
from gaemail.errors import EX_CONFIG, ConfigurationError


@pytest.fixture
def envdir(tmp_path: Path) -> Path:
    d = tmp_path / "envdir"
    d.mkdir()
    (d / "GMAIL_PROXY_URL").write_text("http://envdir.example/\nignored second line\n")
    (d / "GMAIL_SECRET_KEY").write_text("  envdir-secret  \n")
    return d


def test_envdir_is_the_last_place(envdir: Path) -> None:
    settings = Settings({}, {"GMAIL_ENVDIR": str(envdir)})
    url = settings.require("url")
    assert (url.value, url.source) == ("http://envdir.example/", str(envdir / "GMAIL_PROXY_URL"))
    assert settings.secret_key() == b"envdir-secret"


def test_environment_beats_envdir(envdir: Path) -> None:
    env = {
        "GMAIL_ENVDIR": str(envdir),
        "GMAIL_PROXY_URL": "http://env.example/",
        "GMAIL_SECRET_KEY": "env-secret",
    }
    settings = Settings({}, env)
    assert settings.require("url").source == "environment GMAIL_PROXY_URL"
    assert settings.secret_key() == b"env-secret"


def test_flag_beats_environment(envdir: Path, tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("file-secret\nsecond line is not part of it\n")
    env = {
        "GMAIL_ENVDIR": str(envdir),
        "GMAIL_PROXY_URL": "http://env.example/",
        "GMAIL_SECRET_KEY": "env-secret",
    }
    settings = Settings({"url": "http://flag.example/", "secret": str(secret_file)}, env)
    assert settings.require("url").value == "http://flag.example/"
    assert settings.require("url").source == "--url"
    assert settings.secret_key() == b"file-secret"
    assert settings.require("secret").source == f"--secret-file {secret_file}"


def test_missing_setting_names_all_three_places(tmp_path: Path) -> None:
    settings = Settings({}, {"GMAIL_ENVDIR": str(tmp_path)})
    with pytest.raises(ConfigurationError) as info:
        settings.require("url")
    text = str(info.value)
    assert "--url" in text and "GMAIL_PROXY_URL" in text
    assert str(tmp_path / "GMAIL_PROXY_URL") in text
    assert "\n" not in text
    assert info.value.exit_code == EX_CONFIG


def test_default_envdir_is_etc_envdir() -> None:
    assert Settings({}, {}).envdir == "/etc/envdir"


def test_empty_envdir_file_means_unset(tmp_path: Path) -> None:
    (tmp_path / "GMAIL_FROM").write_text("\n")
    assert Settings({}, {"GMAIL_ENVDIR": str(tmp_path)}).get("from") is None


def test_default_applies_last(tmp_path: Path) -> None:
    setting = Settings({}, {"GMAIL_ENVDIR": str(tmp_path)}).require("timeout")
    assert (setting.value, setting.source) == ("30", "default")


def test_bad_timeout_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        Settings({"timeout": "soon"}, {}).timeout()


def test_unreadable_secret_file_error_names_file_not_content(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigurationError, match="cannot read") as info:
        Settings({"secret": str(missing)}, {}).secret_key()
    assert str(missing) in str(info.value)


def test_secret_never_shown(envdir: Path) -> None:
    settings = Settings({}, {"GMAIL_ENVDIR": str(envdir), "GMAIL_SECRET_KEY": "s3cr3t-value"})
    setting = settings.require("secret")
    assert "s3cr3t" not in repr(setting)
    assert "s3cr3t" not in setting.display
    report = "\n".join(" ".join(row) for row in settings.report())
    assert "s3cr3t" not in report
    assert "GMAIL_SECRET_KEY" in report and "hidden" in report


def test_nothing_read_until_asked(tmp_path: Path) -> None:
    (tmp_path / "GMAIL_PROXY_URL").write_text("http://a.example/\n")
    settings = Settings({}, {"GMAIL_ENVDIR": str(tmp_path)})
    (tmp_path / "GMAIL_PROXY_URL").write_text("http://b.example/\n")
    assert settings.require("url").value == "http://b.example/"


def test_mail_domain_order_setting_then_mailname_then_the_host(tmp_path: Path) -> None:
    mailname = tmp_path / "mailname"
    fqdn = lambda: "host.example.com"  # noqa: E731
    chosen = Settings({"default_domain": "set.example"}, {}).mail_domain(str(mailname), fqdn)
    assert chosen is not None and (chosen.value, chosen.source) == (
        "set.example",
        "--default-domain",
    )
    host = Settings({}, {}).mail_domain(str(mailname), fqdn)
    assert host is not None and host.value == "host.example.com"
    mailname.write_text("mail.example.org\n")
    found = Settings({}, {}).mail_domain(str(mailname), fqdn)
    assert found is not None and (found.value, found.source) == ("mail.example.org", str(mailname))


def test_a_name_without_a_dot_is_no_mail_domain(tmp_path: Path) -> None:
    mailname = tmp_path / "mailname"
    mailname.write_text("vm\n")
    assert Settings({}, {}).mail_domain(str(mailname), lambda: "localhost") is None
    assert Settings({}, {}).mail_domain(str(mailname), lambda: "box.localdomain") is None
