from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core.urls import mask_text, mask_url, url_problem
from tests.secrets_strategies import Secret, leaked, libpq_strings, secret_urls


@settings(max_examples=500)
@given(secret_urls())
def test_mask_url_hides_every_secret_of_any_url(case: tuple[str, Secret]) -> None:
    """No token of a password (user-info, ?password=, ?sslpassword=, ...) survives mask_url."""
    url, secret = case
    assert leaked(mask_url(url), secret) == []


@settings(max_examples=300)
@given(secret_urls(encoded=True))
def test_mask_url_hides_percent_encoded_secrets(case: tuple[str, Secret]) -> None:
    """Percent-encoded passwords are masked as well, and such URLs are not refused."""
    url, secret = case
    assert leaked(mask_url(url), secret) == []
    assert url_problem(url) is None


@settings(max_examples=300)
@given(libpq_strings())
def test_mask_url_hides_libpq_passwords(case: tuple[str, Secret]) -> None:
    """A libpq key=value string loses its password, quoted or not."""
    text, secret = case
    masked = mask_url(text)
    assert leaked(masked, secret) == []
    assert "host=127.0.0.1" in masked


@settings(max_examples=300)
@given(secret_urls(), st.sampled_from(["{}", "'{}'", "at {}: refused", "url={} attempt=2"]))
def test_mask_text_hides_secrets_of_urls_inside_messages(
    case: tuple[str, Secret], frame: str
) -> None:
    """A URL inside a longer message (quoted or not) loses its secrets to mask_text."""
    url, secret = case
    assert leaked(mask_text(frame.format(url)), secret) == []


def test_mask_url_keeps_what_is_not_secret() -> None:
    """User, host, port, database and other parameters stay readable."""
    assert mask_url("postgresql://u:pw@h:5432/db?sslmode=require") == (
        "postgresql://u:***@h:5432/db?sslmode=require"
    )
    assert mask_url("postgresql://u@h/db?sslpassword=x&sslmode=require") == (
        "postgresql://u@h/db?sslpassword=***&sslmode=require"
    )
    assert mask_url("postgresql://u@127.0.0.1:1/db?password=s3cret") == (
        "postgresql://u@127.0.0.1:1/db?password=***"
    )
    assert mask_url("http://crate:4200/?schema=s") == "http://crate:4200/?schema=s"
    assert mask_url("host=h password='a b' user=u") == "host=h password=*** user=u"


def test_url_problem_names_ambiguous_passwords_without_quoting_them() -> None:
    """Unescaped '@', '/', '?' in a password are refused with a reason that quotes nothing."""
    for url in (
        "postgresql://u:QzA/QzB@h:1/db",
        "postgresql://u:QzA@QzB@h/db",
        "postgresql://u:12/QzB@h/db",
        "postgresql://u:QzA?QzB@h/db",
        "postgresql://u@h/db?password=QzA&",
        "postgresql://u@h/db?password=QzA&QzB@h",
        "postgresql://u:QzA%@h/db",
    ):
        problem = url_problem(url)
        assert problem is not None
        assert "Qz" not in problem
    assert url_problem("postgresql://u:p%40ss@h:1/db?options=a@b") is None
