"""`kaq serve --workers 2`: POST /v1/admin/reload reaches one worker but reloads them all."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from conftest import ADMIN_TOKEN, start_server, stop_server


def _digests(url: str, n: int = 12) -> set[str]:
    # a new connection per request, so either worker may answer
    return {
        httpx.get(url + "/v1/rulesets", timeout=10).json()["rulesets"][0]["digest"]
        for _ in range(n)
    }


def test_admin_reload_replaces_every_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, workers=2, tiny=True)
    try:
        before = _digests(server.url)
        assert len(before) == 1
        ruleset = next((tmp_path / "rulesets").glob("*.yaml"))
        ruleset.write_text(ruleset.read_text(encoding="utf-8") + "\n# reloaded\n", "utf-8")
        r = httpx.post(
            server.url + "/v1/admin/reload",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["workers_restarting"] is True
        new = r.json()["rulesets"][0]["digest"]
        assert new not in before
        deadline = time.monotonic() + 60
        seen: set[str] = set()
        while time.monotonic() < deadline:
            try:
                seen = _digests(server.url)
            except httpx.HTTPError:
                seen = set()  # a worker being replaced
            if seen == {new}:
                break
            time.sleep(0.5)
        assert seen == {new}
    finally:
        stop_server(server)


def test_serve_refuses_to_start_on_a_broken_ruleset_with_located_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO

    folder = tmp_path / "rulesets"
    folder.mkdir()
    text = (REPO / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    (folder / "key-account.yaml").write_text(
        text.replace("gross_margin_pct < ", "gross_margn_pct < ", 1), encoding="utf-8"
    )
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "kaq"),
            "serve",
            "--rulesets",
            str(folder),
            "--port",
            "1",
            "--db",
            f"sqlite:///{tmp_path / 'k.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "key-account.yaml:" in proc.stderr and "expr.unknown_name" in proc.stderr
    assert "did you mean `gross_margin_pct`?" in proc.stderr
