"""Error classification tables: SQLSTATE, Oracle and CrateDB HTTP codes."""

from __future__ import annotations

import pytest

from async_etl.core.classify import (
    classify_crate,
    classify_oracle,
    classify_sqlstate,
    fatal_sqlstate,
    is_transient,
    pg_kind,
    tls_refusal,
)
from async_etl.errors import ErrorKind

T = ErrorKind.DB_TRANSIENT
P = ErrorKind.DB_PERMANENT
D = ErrorKind.DATA
N = ErrorKind.NETWORK

SQLSTATES = [
    ("08000", T),
    ("08001", T),
    ("08003", T),
    ("08004", T),
    ("08006", T),
    ("40001", T),
    ("40P01", T),
    ("40p01", T),
    ("53300", T),
    ("55P03", T),
    ("57P01", T),
    ("57P02", T),
    ("57P03", T),
    ("57P04", P),
    ("58000", T),
    ("58030", T),
    ("58P01", P),
    ("53100", P),
    ("22001", D),
    ("22P02", D),
    ("22003", D),
    ("22007", D),
    ("22008", D),
    ("23502", D),
    ("23505", D),
    ("23514", D),
    ("42P01", P),
    ("42703", P),
    ("42501", P),
    ("42601", P),
    ("28P01", P),
    ("28000", P),
    ("3D000", P),
    ("40002", P),
    ("XX000", P),
    ("", P),
    ("garbage", P),
]


@pytest.mark.parametrize(("code", "kind"), SQLSTATES)
def test_sqlstate_table(code: str, kind: ErrorKind) -> None:
    """Each SQLSTATE maps to the kind the reference table gives it."""
    assert classify_sqlstate(code) is kind


ORACLE = [
    ("ORA-03113", None, T),
    ("ORA-03114", None, T),
    ("ORA-03135", None, T),
    ("ORA-12514", None, T),
    ("ORA-12516", None, T),
    ("ORA-12519", None, T),
    ("ORA-12520", None, T),
    ("ORA-12541", None, T),
    ("ORA-00060", None, T),
    ("ORA-08177", None, T),
    ("ORA-00018", None, T),
    ("ORA-00020", None, T),
    ("ORA-02391", None, T),
    ("DPY-4011", None, T),
    ("DPY-6005", None, T),
    ("dpy-6005", False, T),
    ("ORA-01400", None, D),
    ("ORA-12899", None, D),
    ("ORA-01722", None, D),
    ("ORA-01840", None, D),
    ("ORA-01861", None, D),
    ("ORA-00001", None, D),
    ("ORA-00001", True, D),
    ("ORA-00942", None, P),
    ("ORA-00904", None, P),
    ("ORA-00900", None, P),
    ("ORA-00933", None, P),
    ("ORA-01017", None, P),
    ("ORA-01017", False, P),
    ("ORA-04068", True, T),
    ("DPY-1001", None, P),
    ("ORA-", None, P),
    ("nonsense", None, P),
    ("nonsense", True, T),
]


@pytest.mark.parametrize(("code", "recoverable", "kind"), ORACLE)
def test_oracle_table(code: str, recoverable: bool | None, kind: ErrorKind) -> None:
    """Each Oracle code (with its isrecoverable flag) maps to the kind the reference gives it."""
    assert classify_oracle(code, recoverable) is kind


CRATE = [
    (None, None, N),
    (None, 4091, N),
    (429, 4290, T),
    (429, None, T),
    (503, 5030, T),
    (503, 5031, T),
    (503, 5032, T),
    (503, 5033, T),
    (503, None, T),
    (500, 5002, T),
    (500, 5003, T),
    (500, 5000, T),
    (500, 5001, T),
    (502, None, T),
    (504, None, T),
    (200, 5002, T),
    (200, 5003, T),
    (200, 4091, D),
    (409, 4091, D),
    (200, 5000, P),
    (200, None, P),
    (400, 4000, P),
    (400, 4001, P),
    (400, 4003, P),
    (400, 4008, P),
    (401, 4010, P),
    (401, None, P),
    (401, 4011, P),
    (403, 4031, P),
    (403, 4032, P),
    (404, 4041, P),
    (404, 4043, P),
    (404, 4045, P),
    (404, 40411, P),
    (409, 4092, P),
    (409, 4093, P),
]


@pytest.mark.parametrize(("status", "code", "kind"), CRATE)
def test_crate_table(status: int | None, code: int | None, kind: ErrorKind) -> None:
    """Each CrateDB (HTTP status, error code) pair maps to the kind the reference gives it."""
    assert classify_crate(status, code) is kind


def test_is_transient_axis() -> None:
    """Only NETWORK and DB_TRANSIENT are worth another attempt."""
    assert {k for k in ErrorKind if is_transient(k)} == {N, T}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('connection failed: FATAL:  database "nosuchdb" does not exist', "28000"),
        ('FATAL:  password authentication failed for user "u"', "28000"),
        ("FATAL:  sorry, too many connections already", "53300"),
        ("FATAL:  the database system is starting up", "57P03"),
        ("FATAL:  the database system is in recovery mode", "57P03"),
        ("FATAL:  terminating connection due to administrator command", "57P01"),
        ("connection refused", None),
    ],
)
def test_a_fatal_refusal_maps_to_the_sqlstate_it_stands_for(text: str, code: str | None) -> None:
    """libpq's FATAL texts get the SQLSTATE asyncpg would report: transient only for 'later'."""
    assert fatal_sqlstate(text) == code
    if code is not None:
        transient = classify_sqlstate(code) is ErrorKind.DB_TRANSIENT
        assert transient is (code != "28000")


def test_a_fatal_transient_error_is_a_lost_connection_for_both_drivers() -> None:
    """FATAL ends the session: a transient code is then NETWORK; other kinds are unchanged."""
    assert pg_kind("57P01", fatal=True) is ErrorKind.NETWORK
    assert pg_kind("57P01", fatal=False) is ErrorKind.DB_TRANSIENT
    assert pg_kind("40P01", fatal=False) is ErrorKind.DB_TRANSIENT
    assert pg_kind("28P01", fatal=True) is ErrorKind.DB_PERMANENT
    assert pg_kind("23505", fatal=False) is ErrorKind.DATA


@pytest.mark.parametrize(
    ("text", "cure"),
    [("Cannot connect to host h:4200 ssl:default [[SSL: WRONG_VERSION_NUMBER] wrong version "
      "number (_ssl.c:1006)]", "http://"),
     ("Cannot connect to host h:4200 ssl:True [SSLCertVerificationError: (1, '[SSL: "
      "CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate')]",
      "certificate"),
     ('PostgreSQL server at "127.0.0.1:5432" rejected SSL upgrade', "sslmode"),
     ("server does not support SSL, but SSL was required", "sslmode")],
)  # fmt: skip
def test_tls_failures_no_retry_can_cure_are_named(text: str, cure: str) -> None:
    """TLS spoken to a plain port, an untrusted certificate, SSL refused: a cure, not a retry."""
    hint = tls_refusal(text)
    assert hint is not None and cure in hint


@pytest.mark.parametrize(
    "text",
    ["[Errno 111] Connect call failed ('127.0.0.1', 4200)",
     "[SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol (_ssl.c:1006)",
     "Server disconnected"],
)  # fmt: skip
def test_other_connection_failures_stay_retryable(text: str) -> None:
    """A refused, reset or cut connection (a restarting server) has no TLS cure: None."""
    assert tls_refusal(text) is None
