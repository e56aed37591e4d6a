"""The ruleset sources as the studio and `kaq publish` use them: the gate, base digests
(409 material), versions, texts for a revert; on PostgreSQL and on the folder."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import copy_rulesets, running, settings_for

from api.ruleset_source import DbSource, FolderSource, PublishRejected, StaleBase
from engine.tools.gate import read_set, set_digest


def changed(text: str, marker: str) -> str:
    return text + f"\n# {marker}\n"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    return read_set(copy_rulesets(tmp_path / "rulesets"))


def test_a_publish_stores_the_whole_set_once(pg_url, files) -> None:
    db = DbSource(pg_url)
    assert db.head() is None
    first = db.publish(files, who="ops@example", note="first")
    assert first.created and first.info.version == 1 and first.info.digest == set_digest(files)
    assert first.info.rulesets["key-account"]["file"] == "key-account.yaml"
    again = db.publish(files, who="someone else")
    assert not again.created and again.info.version == 1  # the same files: no new version
    head = db.head()
    assert head is not None and dict(head.files) == files  # texts kept byte for byte
    assert (head.info.who, head.info.note) == ("ops@example", "first")


def test_a_publish_that_fails_the_gate_stores_nothing(pg_url, files) -> None:
    db = DbSource(pg_url)
    db.publish(files, who="t")
    broken = dict(files)
    broken["key-account.yaml"] = files["key-account.yaml"].replace(
        "gross_margin_pct < ", "gross_margn_pct < ", 1
    )
    with pytest.raises(PublishRejected) as caught:
        db.publish(broken, who="t")
    assert [d.code for d in caught.value.result.diagnostics] == ["expr.unknown_name"]
    failing = dict(files)
    failing["key-account.tests.yaml"] = files["key-account.tests.yaml"].replace(
        "qualification: key_account", "qualification: not_key_account", 1
    )
    with pytest.raises(PublishRejected) as caught:
        db.publish(failing, who="t")
    assert len(caught.value.result.failures) == 1
    assert [v.version for v in db.versions()] == [1]


def test_a_studio_save_checks_its_base_digest(pg_url, files) -> None:
    db = DbSource(pg_url)
    base = db.publish(files, who="t").info.ruleset_digest("key-account")
    edited = changed(files["key-account.yaml"], "saved in the studio")
    saved = db.publish_ruleset("key-account", edited, who="anna", note="comment", base_digest=base)
    assert saved.created and saved.info.version == 2
    head = db.head()
    assert head is not None and head.files["key-account.yaml"] == edited
    assert head.files["key-account.tests.yaml"] == files["key-account.tests.yaml"]  # kept
    with pytest.raises(StaleBase) as stale:  # a second editor, still on the old base
        db.publish_ruleset("key-account", changed(edited, "x"), who="ben", base_digest=base)
    assert stale.value.current == saved.info.ruleset_digest("key-account")
    assert [v.version for v in db.versions()] == [2, 1]


def test_versions_of_a_ruleset_and_their_texts_for_a_revert(pg_url, files) -> None:
    db = DbSource(pg_url)
    one = db.publish(files, who="a", note="one").info
    text2 = changed(files["key-account.yaml"], "two")
    two = db.publish_ruleset(
        "key-account", text2, who="b", note="two", base_digest=one.ruleset_digest("key-account")
    ).info
    cases = dict(read_set_with(two, db))
    cases["key-account.tests.yaml"] += "\n# only the cases changed\n"
    three = db.publish(cases, who="c", note="cases").info
    listed = db.versions("key-account")
    # version 3 changed the cases only: not a version of the ruleset
    assert [(v.version, v.who, v.note) for v in listed] == [(2, "b", "two"), (1, "a", "one")]
    assert three.ruleset_digest("key-account") == two.ruleset_digest("key-account")
    old = db.ruleset_text("key-account", one.ruleset_digest("key-account") or "")
    assert old == files["key-account.yaml"]
    reverted = db.publish_ruleset(
        "key-account", old, who="d", note="revert", base_digest=two.ruleset_digest("key-account")
    )
    assert reverted.info.version == 4
    assert reverted.info.ruleset_digest("key-account") == one.ruleset_digest("key-account")


def read_set_with(info, db: DbSource) -> dict[str, str]:
    head = db.head()
    assert head is not None and head.info.version == info.version
    return dict(head.files)


def test_concurrent_saves_of_the_same_base_let_one_through(pg_url, files) -> None:
    db = DbSource(pg_url)
    base = db.publish(files, who="t").info.ruleset_digest("key-account")
    outcomes: list[str] = []

    def save(who: str) -> None:
        try:
            db_own = DbSource(pg_url)
            db_own.publish_ruleset(
                "key-account", changed(files["key-account.yaml"], who), who=who, base_digest=base
            )
            outcomes.append("saved")
        except StaleBase:
            outcomes.append("stale")

    threads = [threading.Thread(target=save, args=(w,)) for w in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["saved", "stale"]
    assert [v.version for v in db.versions()] == [2, 1]


def test_the_folder_source_publishes_into_the_folder(tmp_path, files) -> None:
    folder = copy_rulesets(tmp_path / "served")
    source = FolderSource(folder, tmp_path / "run")
    head = source.head()
    assert head is not None and head.info.version == 0  # the folder, before any generation
    base = head.info.ruleset_digest("key-account")
    edited = changed(files["key-account.yaml"], "folder save")
    saved = source.publish_ruleset("key-account", edited, who="anna", base_digest=base)
    assert saved.info.version == 1 and (folder / "key-account.yaml").read_text("utf-8") == edited
    with pytest.raises(StaleBase):
        source.publish_ruleset("key-account", edited + "#", who="ben", base_digest=base)


@pytest.mark.anyio
async def test_a_save_through_the_service_is_served_before_it_answers(pg_url, tmp_path) -> None:
    files = read_set(copy_rulesets(tmp_path / "published"))
    DbSource(pg_url).publish(files, who="t")
    async with running(settings_for(tmp_path, db_url=pg_url, ruleset_source="db")) as r:
        sync = r.state.rulesets
        served = sync.served
        assert served is not None and served.version == 1
        edited = changed(files["key-account.yaml"], "through the service")
        saved = await sync.publish_ruleset(
            "key-account",
            edited,
            who="anna",
            note="n",
            base_digest=served.ruleset_digest("key-account"),
        )
        assert sync.served_version() == saved.info.version == 2
        listing = (await r.client.get("/v1/rulesets")).json()
        assert listing["source"]["version"] == 2 and listing["source"]["who"] == "anna"
        assert listing["rulesets"][0]["digest"] == saved.info.ruleset_digest("key-account")


def _kaq_publish(*args: str):
    from typer.testing import CliRunner

    from cli import app

    return CliRunner().invoke(app, ["publish", *args])


def test_kaq_publish_then_publish_the_same_files(pg_url, tmp_path):
    folder = tmp_path / "rulesets"
    copy_rulesets(folder)
    first = _kaq_publish(str(folder), "--db", pg_url, "--who", "ci", "--note", "n")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("published version 1 (sha256:")
    again = _kaq_publish(str(folder), "--db", pg_url)
    assert again.exit_code == 0 and again.stdout.startswith("unchanged: version 1")
    stale = _kaq_publish(str(folder), "--db", pg_url, "--base", "sha256:" + "0" * 64)
    assert stale.exit_code == 1 and "nothing was published" in stale.stderr


def test_concurrent_folder_saves_of_the_same_base_let_one_through(tmp_path, files) -> None:
    folder = copy_rulesets(tmp_path / "served")
    base = FolderSource(folder).head().info.ruleset_digest("key-account")  # type: ignore[union-attr]
    outcomes: list[str] = []

    def save(who: str) -> None:
        try:  # each its own source, as two workers of one server are
            FolderSource(folder, tmp_path / "run").publish_ruleset(
                "key-account", changed(files["key-account.yaml"], who), who=who, base_digest=base
            )
            outcomes.append("saved")
        except StaleBase:
            outcomes.append("stale")

    threads = [threading.Thread(target=save, args=(w,)) for w in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["saved", "stale"]
    kept = FolderSource(folder).versions("key-account")
    assert [v.note for v in kept][1:] == ["as found in the folder before the first studio save"]
    assert len(kept) == 2 and not list(folder.glob(".*.tmp"))


def test_a_folder_save_that_fails_the_gate_writes_nothing_and_keeps_no_version(
    tmp_path, files
) -> None:
    folder = copy_rulesets(tmp_path / "served")
    source = FolderSource(folder)
    base = source.head().info.ruleset_digest("key-account")  # type: ignore[union-attr]
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    with pytest.raises(PublishRejected):
        source.publish_ruleset(
            "key-account",
            files["key-account.yaml"].replace("kaq: 1", "kaq: 2"),
            who="x",
            base_digest=base,
        )
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert not (folder / ".kaq-history" / "key-account.jsonl").exists()
    [only] = source.versions("key-account")  # the folder itself, no saved version
    assert only.version == 0 and only.ruleset_digest("key-account") == base
