"""Hypothesis strategies for URLs that carry secrets in every position a user may put one.

A secret is made of distinctive tokens (``Qz`` + letters and digits) joined by the special
characters people put in passwords, so a test proves masking by checking that no *token*
appears anywhere: a secret cut in two by a careless masker still shows one of its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from hypothesis import strategies as st

SPECIALS = "@/:?#&=%!$+;,.~*'()[] "
TOKEN = st.from_regex(r"Qz[A-Z0-9]{6}", fullmatch=True)
SECRET_PARAMS = ("password", "sslpassword", "PASSWORD", "passwd", "pwd", "token", "api_key")


@dataclass(frozen=True)
class Secret:
    """A secret: its text and the tokens none of which may appear in any output."""

    text: str
    tokens: tuple[str, ...]


@st.composite
def secrets(draw: st.DrawFn, specials: str = SPECIALS) -> Secret:
    """A secret of 1-3 tokens joined (and maybe framed) by characters from ``specials``."""
    tokens = tuple(draw(st.lists(TOKEN, min_size=1, max_size=3, unique=True)))
    sep = st.text(alphabet=specials, max_size=2) if specials else st.just("")
    parts = [draw(sep)]
    for tok in tokens:
        parts += [tok, draw(sep)]
    return Secret("".join(parts), tokens)


@st.composite
def secret_urls(
    draw: st.DrawFn, *, host: str = "127.0.0.1", port: int = 1, encoded: bool = False
) -> tuple[str, Secret]:
    """A database URL holding a secret as a user-info password, a query parameter or both.

    ``encoded``: percent-encode the secret (a URL a driver parses the same way as urllib).
    """
    form = draw(st.sampled_from(["userinfo", "query", "both", "crate"]))
    scheme = "http" if form == "crate" else draw(st.sampled_from(["postgresql", "postgres"]))
    # an unescaped '&...=' in a query value starts another parameter: it is not the secret
    secret = draw(secrets(SPECIALS.replace("=", "").replace(" ", "")))
    text = quote(secret.text, safe="") if encoded else secret.text
    path = "" if form == "crate" else "/db"
    if form in ("userinfo", "crate"):
        return f"{scheme}://u:{text}@{host}:{port}{path}", secret
    name = draw(st.sampled_from(SECRET_PARAMS[:2] if encoded else SECRET_PARAMS))
    query = f"?sslmode=disable&{name}={text}" if draw(st.booleans()) else f"?{name}={text}"
    if form == "query":
        return f"{scheme}://u@{host}:{port}{path}{query}", secret
    other = draw(secrets(SPECIALS.replace(" ", "")))
    user_pw = quote(other.text, safe="") if encoded else other.text
    both = Secret(f"{secret.text}|{other.text}", secret.tokens + other.tokens)
    return f"{scheme}://u:{user_pw}@{host}:{port}{path}{query}", both


@st.composite
def libpq_strings(draw: st.DrawFn) -> tuple[str, Secret]:
    """A libpq ``key=value`` connection string with a (maybe quoted) password."""
    quoted = draw(st.booleans())
    secret = draw(secrets(SPECIALS if quoted else SPECIALS.replace(" ", "").replace("'", "")))
    if quoted:
        value = "'" + secret.text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    else:
        value = secret.text
    name = draw(st.sampled_from(["password", "sslpassword"]))
    spacer = draw(st.sampled_from(["=", " = "]))
    return f"host=127.0.0.1 port=1 user=u {name}{spacer}{value} dbname=db", secret


def leaked(text: str, secret: Secret) -> list[str]:
    """The tokens of ``secret`` that appear in ``text`` (empty: nothing leaked)."""
    return [tok for tok in secret.tokens if tok in text]
