"""Service settings, read from `KAQ_*` environment variables and validated at start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.runtime.loader import rulesets_folder

from .redact import redact_url

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="KAQ_", extra="ignore", frozen=True)

    rulesets: Path = Field(
        default_factory=lambda: rulesets_folder(env={}),
        description="Folder of the rulesets to serve (default: ./rulesets if it exists, else "
        "the rulesets shipped with kaq).",
    )
    ruleset_source: Literal["dir", "db"] = Field(
        default="dir",
        description="Where the rulesets come from: `dir` (the folder) or `db` (the versions "
        "`kaq publish` stores in the PostgreSQL database of KAQ_DB_URL).",
    )
    ruleset_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="How often every worker checks for a new ruleset version besides "
        "LISTEN/NOTIFY (db) or the run's generation file (dir).",
    )
    run_dir: Path | None = Field(
        default=None,
        description="Folder shared by the workers of one `kaq serve` (set by kaq serve): the "
        "run's ruleset generation.",
    )
    db_url: str = Field(
        default="sqlite:///kaq.db",
        description="Decision log: sqlite:///relative.db, sqlite:////abs.db or postgresql://...",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of the admin endpoints; unset disables them (403)."
    )
    editor_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the studio's editing endpoints (the admin token works "
        "too); with neither set, the studio's API answers 403.",
    )
    studio_assets: Path | None = Field(
        default=None,
        description="Folder of the built studio page (default: studio/dist of the checkout, "
        "built by `make studio`).",
    )
    studio_max_source_bytes: int = Field(
        default=4 * MiB,
        gt=0,
        description="Cap of a studio request body (a ruleset text is up to 2 MB).",
    )
    max_body_bytes: int = Field(default=1 * MiB, gt=0, description="Cap of a single-account body.")
    max_batch_bytes: int = Field(
        default=32 * MiB, gt=0, description="Cap of a JSON batch/portfolio body."
    )
    max_batch_items: int = Field(
        default=10_000, gt=0, description="Accounts per JSON batch or portfolio."
    )
    max_json_depth: int = Field(
        default=16, gt=2, description="Deepest nesting accepted in a JSON body."
    )
    max_string_chars: int = Field(
        default=10_000, gt=0, description="Longest string (value or key) accepted in a JSON body."
    )
    default_ruleset: str = Field(
        default="key-account", description="Ruleset used without ?ruleset=."
    )
    log_retention_days: int | None = Field(
        default=None,
        gt=0,
        description="Decisions older than this many days are deleted (hourly); unset: kept.",
    )
    log_chunk_size: int = Field(
        default=256, gt=0, description="Batch verdicts written to the decision log per transaction."
    )
    http: Literal["httptools", "h11"] = Field(
        default="httptools",
        description="HTTP/1.1 parser: httptools (C, the default) or h11 (pure Python).",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Once the rulesets are loaded, move everything a worker has built out of "
        "the garbage collector's scans (gc.freeze): a full collection that walks them is a "
        "pause of tens of ms in some request's answer. Undone at the first reload, so that "
        "the rulesets it retires are collected.",
    )
    access_log: bool = Field(
        default=False,
        description="Log one line per request (off by default: /metrics counts requests by "
        "route and status, and a line per request costs time on every answer).",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Time a connection has to send a request's headers (from its start, or "
        "from the previous response), else it is closed (with a 408 if it had begun).",
    )
    body_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Time kaq waits for a request body, plus 1 s per body_min_bytes_per_second "
        "received; beyond it the request is answered 408.",
    )
    body_min_bytes_per_second: int = Field(
        default=500,
        gt=0,
        description="Average rate a body (an NDJSON stream too) must keep after its first "
        "body_timeout_seconds.",
    )

    @field_validator("db_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @model_validator(mode="after")
    def _db_source_needs_postgres(self) -> Settings:
        if self.ruleset_source == "db" and not self.db_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError(
                "KAQ_RULESET_SOURCE=db keeps the rulesets in the PostgreSQL database of "
                "KAQ_DB_URL, which must then start with postgresql://"
            )
        return self

    @property
    def editor_tokens(self) -> dict[str, bytes]:
        """Role -> token of those set and non-empty (the studio accepts either)."""
        out = {}
        for role, secret in (("editor", self.editor_token), ("admin", self.admin_token)):
            if secret is not None and secret.get_secret_value():
                out[role] = secret.get_secret_value().encode()
        return out

    @property
    def admin_enabled(self) -> bool:
        """Admin endpoints answer only when a non-empty token is configured."""
        return bool(self.admin_token and self.admin_token.get_secret_value())


def describe_errors(exc: ValidationError) -> list[str]:
    """Each settings error as `KAQ_NAME: message (got value)`, for an operator to act on.

    A value is shown redacted (a URL's password never appears) and a secret field's
    value not at all: these lines go to a terminal and to logs.
    """
    lines = []
    for e in exc.errors(include_url=False):
        field = str(e["loc"][0]) if e["loc"] else ""
        msg = e["msg"].removeprefix("Value error, ")
        if not field:  # a rule across settings: its message names them
            lines.append(msg)
            continue
        line = f"KAQ_{field.upper()}: {msg}"
        info = Settings.model_fields.get(field)
        secret = info is not None and "SecretStr" in str(info.annotation)
        if "input" in e and not secret:
            value = e["input"]
            line += f" (got {redact_url(value) if isinstance(value, str) else value!r})"
        lines.append(line)
    return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
