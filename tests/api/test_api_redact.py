"""No credential is ever printed: URLs in logs and start-up errors, whatever their form."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from hypothesis import given
from hypothesis import strategies as st

from api.decision_log import DecisionLog, backend_for
from api.redact import redact_url, scrub

SECRET = "hunter2"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://kaq:hunter2@db.internal:5433/kaq",
            "postgresql://kaq:***@db.internal:5433/kaq",
        ),
        ("postgresql://postgres@127.0.0.1:5432/test?password=hunter2", "?password=***"),
        ("postgres://h/db?sslmode=require&sslpassword=hunter2", "?sslmode=require&sslpassword=***"),
        ("postgresql://h/db?PassWord=hunter2&application_name=kaq", "&application_name=kaq"),
        ("postgresql://h/db?password=hunter%32", "password=***"),
        ("postgresql://u:hun@ter2@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:hu/n?t#er2@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:hunter2@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://:hunter2@h/db", "postgresql://:***@h/db"),
        ("mysql://u:hunter2@db.example/kaq", "mysql://u:***@db.example/kaq"),
        ("redis://h/0?token=hunter2;x=1", "?token=***;x=1"),
        ("u:hunter2@h", "u:***@h"),
    ],
)
def test_every_credential_form_is_masked(url: str, shown: str) -> None:
    out = redact_url(url)
    assert "hunter" not in out and shown in out, out


@pytest.mark.parametrize(
    "url",
    ["sqlite:///kaq.db", "sqlite:////var/lib/kaq.db", "postgresql://kaq@db/kaq?sslmode=require"],
)
def test_urls_without_credentials_are_printed_as_they_are(url: str) -> None:
    assert redact_url(url) == url


password = st.text(
    st.characters(codec="utf-8", exclude_characters="&;#\n"), min_size=1, max_size=20
).map(lambda s: "Zq9" + s)


@given(password=password, form=st.sampled_from(["userinfo", "query", "sslpassword"]))
def test_a_password_of_any_characters_is_never_shown(password: str, form: str) -> None:
    from urllib.parse import quote

    url = {
        "userinfo": f"postgresql://kaq:{password}@db:5432/kaq?sslmode=require",
        "query": f"postgresql://kaq@db/kaq?password={password}",
        "sslpassword": f"postgresql://db/kaq?sslpassword={quote(password)}&sslmode=require",
    }[form]
    out = redact_url(url)
    assert "Zq9" not in out, out
    message = f"connection failed for {url}: password {password} rejected ({quote(password)})"
    assert "Zq9" not in scrub(message, url)


def test_errors_quoting_a_url_are_redacted() -> None:
    with pytest.raises(ValueError) as exc:
        backend_for("mysql://u:hunter2@db.example/kaq")
    assert SECRET not in str(exc.value) and "u:***@db.example" in str(exc.value)


@pytest.mark.anyio
async def test_decision_log_ready_line_masks_a_password_query_parameter(pg_url, caplog) -> None:
    log = DecisionLog(pg_url + "&password=hunter2")
    with caplog.at_level(logging.INFO, logger="kaq.decision_log"):
        await log.open()
    await log.close()
    assert "decision log ready" in caplog.text and "password=***" in caplog.text
    assert SECRET not in caplog.text


def test_serve_refuses_an_unsupported_scheme_without_echoing_its_password(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "kaq"), "serve", "--db", "mysql://u:hunter2@db/kaq"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 2
    assert SECRET not in out.stdout + out.stderr
    assert "KAQ_DB_URL" in out.stderr and "mysql://u:***@db/kaq" in out.stderr
