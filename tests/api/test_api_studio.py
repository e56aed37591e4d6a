"""The studio's JSON API (api.md § Studio): check, evaluate, impact, save, versions, revert.

Hostile texts (deep nesting, huge files, alias bombs, Python tags, Python-looking
expressions) must come back as diagnostics or 4xx, never a 500, never code execution,
never a half-saved file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, running, settings_for

from engine.tools.impact import analyze, load_corpus, read_side

pytestmark = pytest.mark.anyio

EDITOR = "studio-editor-token"
AUTH = {"authorization": f"Bearer {EDITOR}"}
SOURCE = (REPO / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
TESTS = (REPO / "rulesets" / "key-account.tests.yaml").read_text(encoding="utf-8")
AT_75 = SOURCE.replace(
    "  key_account_min_score:\n    value: 70\n", "  key_account_min_score:\n    value: 75\n"
)
# the one case the 70 -> 75 change moves on purpose: exactly 70 points
TESTS_AT_75 = TESTS.replace(
    "  - note: step 3 - exactly 70 points is a key account\n"
    "    base: strong\n"
    "    facts: {product_fit: partial, purchasing_model: mixed, seller_scale_match: false, "
    "tailored_solution: false}\n"
    "    # 10 + 10 + 20 + 15 + 10 + 0 + 5 + 0 = 70\n"
    "    want:\n"
    "      qualification: key_account\n",
    "  - note: step 3 - exactly 70 points is a potential key account at 75\n"
    "    base: strong\n"
    "    facts: {product_fit: partial, purchasing_model: mixed, seller_scale_match: false, "
    "tailored_solution: false}\n"
    "    # 10 + 10 + 20 + 15 + 10 + 0 + 5 + 0 = 70\n"
    "    want:\n"
    "      qualification: potential_key_account\n",
)
CORPUS = REPO / "corpus" / "accounts-2000.jsonl"
AT_70_POINTS = next(
    a for a in load_corpus(CORPUS) if a["account_id"] == "ACC-000017"
)  # kaq diff: key_account -> potential_key_account at 75


def test_the_edits_of_this_module_apply() -> None:
    assert AT_75 != SOURCE and TESTS_AT_75 != TESTS


@pytest.fixture
async def studio(tmp_path: Path, anyio_backend: str):
    async with running(settings_for(tmp_path, editor_token=EDITOR)) as r:
        yield r


async def _check(r, source: str, **extra):
    res = await r.client.post(
        "/v1/studio/check", json={"name": "key-account", "source": source, **extra}, headers=AUTH
    )
    assert res.status_code == 200, res.text
    return res.json()


# ------------------------------------------------------------------------ tokens


async def test_the_studio_api_is_off_without_a_token(tmp_path: Path) -> None:
    async with running(settings_for(tmp_path, admin_token=None)) as r:
        res = await r.client.post("/v1/studio/check", json={"source": SOURCE}, headers=AUTH)
        assert res.status_code == 403
        assert res.headers["content-type"] == "application/problem+json"


async def test_a_wrong_token_is_401_and_the_admin_token_works_too(studio) -> None:
    body = {"source": SOURCE}
    res = await studio.client.post(
        "/v1/studio/check", json=body, headers={"authorization": "Bearer nope"}
    )
    assert res.status_code == 401
    res = await studio.client.post("/v1/studio/check", json=body)
    assert res.status_code == 401
    admin = {"authorization": "Bearer test-admin-token"}
    assert (
        await studio.client.post("/v1/studio/check", json=body, headers=admin)
    ).status_code == 200


# ------------------------------------------------------------------------ check


async def test_check_of_the_served_text_is_clean_with_its_digest(studio) -> None:
    listing = (await studio.client.get("/v1/rulesets")).json()
    body = await _check(studio, SOURCE)
    assert body["ok"] is True and body["diagnostics"] == []
    assert body["digest"] == listing["rulesets"][0]["digest"]


async def test_check_locates_a_param_written_as_a_percentage(studio) -> None:
    body = await _check(studio, SOURCE.replace("    value: 70\n", '    value: "75%"\n', 1))
    assert body["ok"] is False
    first = body["diagnostics"][0]
    line = SOURCE.splitlines().index("    value: 70") + 1  # the first `value: 70`, edited above
    assert (first["line"], first["code"], first["severity"]) == (
        line,
        "ruleset.param_type",
        "error",
    )
    assert first["hint"] and set(first) >= {"line", "col", "code", "severity", "message", "hint"}


async def test_check_locates_a_broken_yaml_line(studio) -> None:
    lines = SOURCE.splitlines(keepends=True)
    lines.insert(399, "  this line: is: broken\n")
    body = await _check(studio, "".join(lines))
    assert body["ok"] is False
    assert [d["line"] for d in body["diagnostics"]] == [400]
    assert body["diagnostics"][0]["code"].startswith("yaml.")


async def test_check_with_the_form_gives_each_param_with_the_span_of_its_value(studio) -> None:
    body = await _check(studio, SOURCE, form=True)
    param = next(p for p in body["form"]["params"] if p["name"] == "key_account_min_score")
    assert param["value"] == 70 and param["unit"] == "points"
    assert param["range"] == {"min": 0, "max": 100, "integer": False}
    span = param["span"]
    line = SOURCE.splitlines()[span["line"] - 1]
    assert line[span["col"] - 1 : span["end_col"] - 1] == "70"
    message = body["form"]["messages"][0]
    span = message["zh"]["span"]
    text = SOURCE.splitlines()[span["line"] - 1][span["col"] - 1 : span["end_col"] - 1]
    assert json.loads(text) == message["zh"]["value"]


async def test_check_refuses_a_text_that_names_another_ruleset(studio) -> None:
    body = await _check(studio, SOURCE.replace("name: key-account", "name: other", 1))
    assert body["ok"] is False
    assert [d["code"] for d in body["diagnostics"]] == ["studio.name_mismatch"]


HOSTILE = {
    "deep flow nesting": "x: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep block nesting": "".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "v\n",
    "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    ),
    "python tag": "kaq: !!python/object/apply:os.system ['touch {marker}']\n",
    "custom tag": "kaq: !include /etc/passwd\n",
    "python expression": SOURCE.replace(
        "when: \"product_fit == 'strong'\"",
        "when: \"__import__('os').system('touch {marker}') == 0\"",
        1,
    ),
    "dunder attribute": SOURCE.replace(
        "when: \"product_fit == 'strong'\"",
        "when: \"product_fit.__class__.__subclasses__() == 'x'\"",
        1,
    ),
    "lambda": SOURCE.replace("when: \"product_fit == 'strong'\"", 'when: "(lambda: 1)() == 1"', 1),
    "not yaml at all": "\x00\x01\x02 {{{{ ]]]] :::: \t\t",
    "empty": "",
    "a list": "- 1\n- 2\n",
    "huge": "# " + "x" * 2_100_000 + "\n",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_check_answers_hostile_texts_with_diagnostics(studio, kind, tmp_path) -> None:
    marker = tmp_path / "pwned"
    text = HOSTILE[kind].replace("{marker}", str(marker))
    body = await _check(studio, text)
    assert body["ok"] is False and body["diagnostics"], kind
    assert all(d["severity"] == "error" for d in body["diagnostics"])
    assert not marker.exists()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_save_of_a_hostile_text_changes_nothing(studio, kind, tmp_path) -> None:
    marker = tmp_path / "pwned"
    folder = studio.state.settings.rulesets
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    digest = (await studio.client.get("/v1/rulesets")).json()["rulesets"][0]["digest"]
    res = await studio.client.post(
        "/v1/studio/save",
        json={
            "name": "key-account",
            "source": HOSTILE[kind].replace("{marker}", str(marker)),
            "base_digest": digest,
            "note": "hostile",
        },
        headers=AUTH,
    )
    assert res.status_code == 422, res.text
    assert res.json()["diagnostics"]
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert not marker.exists()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b'{"source": 12}', 422),
        (b'{"source": "x", "name": "../../etc/passwd"}', 422),
        (b'{"source": "x", "extra": 1}', 422),
        (b"[1, 2]", 422),
        (b'{"source": "' + b"[" * 100 + b'"}', 200),  # a text: diagnostics
        (b'{"a":' * 100 + b"1" + b"}" * 100, 400),  # nesting of the JSON body itself
    ],
)
async def test_malformed_bodies_are_4xx(studio, body, status) -> None:
    res = await studio.client.post(
        "/v1/studio/check",
        content=body,
        headers={**AUTH, "content-type": "application/json"},
    )
    assert res.status_code == status, res.text


async def test_a_body_over_the_studio_cap_is_413(studio) -> None:
    big = json.dumps({"source": "#" * (5 * 1024 * 1024)})
    res = await studio.client.post(
        "/v1/studio/check", content=big, headers={**AUTH, "content-type": "application/json"}
    )
    assert res.status_code == 413


# ------------------------------------------------------------------------ evaluate


async def test_evaluate_the_edited_text_beside_the_served_one(studio) -> None:
    async def verdict(source: str) -> dict:
        res = await studio.client.post(
            "/v1/studio/evaluate",
            json={"source": source, "facts": AT_70_POINTS, "view": "summary"},
            headers=AUTH,
        )
        assert res.status_code == 200, res.text
        return res.json()

    served, edited = await verdict(SOURCE), await verdict(AT_75)
    assert (served["score"], served["qualification"]) == (70, "key_account")
    assert (edited["score"], edited["qualification"]) == (70, "potential_key_account")
    assert edited["ruleset"]["digest"] != served["ruleset"]["digest"]


async def test_evaluate_logs_nothing(studio) -> None:
    res = await studio.client.post(
        "/v1/studio/evaluate", json={"source": AT_75, "facts": AT_70_POINTS}, headers=AUTH
    )
    assert res.status_code == 200 and "decision_id" not in res.json()


async def test_evaluate_an_invalid_text_is_422_with_diagnostics(studio) -> None:
    res = await studio.client.post(
        "/v1/studio/evaluate",
        json={"source": SOURCE.replace("value: 70", 'value: "75%"', 1), "facts": AT_70_POINTS},
        headers=AUTH,
    )
    assert res.status_code == 422
    assert res.json()["diagnostics"][0]["code"] == "ruleset.param_type"


async def test_evaluate_bad_facts_is_422_naming_the_fact(studio) -> None:
    res = await studio.client.post(
        "/v1/studio/evaluate",
        json={"source": SOURCE, "facts": {"account_id": "x", "annual_spend": "lots"}},
        headers=AUTH,
    )
    assert res.status_code == 422
    assert any("annual_spend" in e["loc"] for e in res.json()["errors"])


# ------------------------------------------------------------------------ impact


async def test_impact_on_the_shipped_corpus_is_the_kaq_diff_report(studio, tmp_path) -> None:
    res = await studio.client.post(
        "/v1/studio/impact", json={"source": AT_75, "corpus": "shipped"}, headers=AUTH
    )
    assert res.status_code == 200, res.text
    got = res.json()
    head = tmp_path / "head"
    head.mkdir()
    (head / "key-account.yaml").write_text(AT_75, encoding="utf-8")
    want = analyze(read_side(str(REPO / "rulesets")), read_side(str(head)), load_corpus(CORPUS))
    for key in ("changed", "qualification_moved", "transitions", "changes", "changed_accounts"):
        assert got[key] == want[key], key
    assert got["changed"] == 87  # what `kaq diff` prints for 70 -> 75 on this corpus
    assert got["corpus"] == {"name": "shipped", "accounts": 2000}


async def test_impact_on_an_uploaded_list_of_facts(studio) -> None:
    res = await studio.client.post(
        "/v1/studio/impact",
        json={"source": AT_75, "corpus": [AT_70_POINTS, {"account_id": "none"}]},
        headers=AUTH,
    )
    assert res.status_code == 200, res.text
    assert res.json()["changed"] == 1 and res.json()["corpus"]["accounts"] == 2


@pytest.mark.parametrize("corpus", [[], "mine", [1], {"a": 1}])
async def test_impact_refuses_what_is_not_a_corpus(studio, corpus) -> None:
    res = await studio.client.post(
        "/v1/studio/impact", json={"source": AT_75, "corpus": corpus}, headers=AUTH
    )
    assert res.status_code == 422


# ------------------------------------------------------------------------ save, versions, revert


async def _served_digest(r) -> str:
    return (await r.client.get("/v1/rulesets")).json()["rulesets"][0]["digest"]


async def test_a_save_that_fails_its_own_cases_is_refused_naming_the_case(studio) -> None:
    folder = studio.state.settings.rulesets
    base = await _served_digest(studio)
    res = await studio.client.post(
        "/v1/studio/save",
        json={"name": "key-account", "source": AT_75, "base_digest": base, "note": "75"},
        headers=AUTH,
    )
    assert res.status_code == 422
    assert any("exactly 70 points" in f for f in res.json()["failures"])
    assert (folder / "key-account.yaml").read_text(encoding="utf-8") == SOURCE
    assert await _served_digest(studio) == base


async def test_save_with_its_cases_serves_the_new_digest_and_keeps_comments(studio) -> None:
    folder = studio.state.settings.rulesets
    base = await _served_digest(studio)
    res = await studio.client.post(
        "/v1/studio/save",
        json={
            "name": "key-account",
            "source": AT_75,
            "tests": TESTS_AT_75,
            "base_digest": base,
            "note": "raise the bar",
            "who": "Anna",
        },
        headers=AUTH,
    )
    assert res.status_code == 200, res.text
    saved = res.json()
    assert saved["digest"] != base and saved["saved"] is True
    assert await _served_digest(studio) == saved["digest"]
    assert (folder / "key-account.yaml").read_text(encoding="utf-8") == AT_75  # byte for byte
    assert (folder / "key-account.tests.yaml").read_text(encoding="utf-8") == TESTS_AT_75
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]

    # a second session, still on the old base: 409, nothing changes
    res = await studio.client.post(
        "/v1/studio/save",
        json={"name": "key-account", "source": SOURCE + "# mine\n", "base_digest": base},
        headers=AUTH,
    )
    assert res.status_code == 409
    assert res.json()["current_digest"] == saved["digest"]
    assert (folder / "key-account.yaml").read_text(encoding="utf-8") == AT_75

    versions = (await studio.client.get("/v1/rulesets/key-account/versions", headers=AUTH)).json()
    listed = versions["versions"]
    assert [v["digest"] for v in listed] == [saved["digest"], base]
    assert listed[0]["note"] == "raise the bar" and listed[0]["who"] == "Anna (editor)"
    assert listed[0]["current"] is True

    # bring the original back: through the same gate (its own cases, as saved now, must pass)
    res = await studio.client.post(
        "/v1/studio/revert", json={"name": "key-account", "digest": base}, headers=AUTH
    )
    assert res.status_code == 422  # the cases now expect 75: the revert is refused, honestly
    source = (
        await studio.client.get("/v1/studio/rulesets/key-account/source", headers=AUTH)
    ).json()
    assert source["digest"] == saved["digest"] and source["tests"] == TESTS_AT_75


async def test_revert_brings_a_saved_version_back(studio) -> None:
    base = await _served_digest(studio)
    edited = SOURCE.replace("Key-account qualification:", "Key-account qualification (v2):", 1)
    res = await studio.client.post(
        "/v1/studio/save",
        json={"name": "key-account", "source": edited, "base_digest": base, "note": "wording"},
        headers=AUTH,
    )
    assert res.status_code == 200, res.text
    edited_digest = res.json()["digest"]
    res = await studio.client.post(
        "/v1/studio/revert", json={"name": "key-account", "digest": base}, headers=AUTH
    )
    assert res.status_code == 200, res.text
    assert res.json()["digest"] == base == await _served_digest(studio)
    folder = studio.state.settings.rulesets
    assert (folder / "key-account.yaml").read_text(encoding="utf-8") == SOURCE
    listed = (await studio.client.get("/v1/rulesets/key-account/versions", headers=AUTH)).json()
    assert [v["digest"] for v in listed["versions"]] == [base, edited_digest, base]
    assert listed["versions"][0]["current"] and listed["versions"][0]["note"].startswith(
        "brought back"
    )


async def test_revert_of_an_unknown_digest_is_404(studio) -> None:
    res = await studio.client.post(
        "/v1/studio/revert",
        json={"name": "key-account", "digest": "sha256:" + "0" * 64},
        headers=AUTH,
    )
    assert res.status_code == 404


async def test_save_publishes_into_the_database_source(pg_url, tmp_path) -> None:
    from conftest import copy_rulesets

    from api.ruleset_source import DbSource
    from engine.tools.gate import read_set

    files = read_set(copy_rulesets(tmp_path / "published"))
    DbSource(pg_url).publish(files, who="t")
    settings = settings_for(tmp_path, db_url=pg_url, ruleset_source="db", editor_token=EDITOR)
    async with running(settings) as r:
        base = await _served_digest(r)
        res = await r.client.post(
            "/v1/studio/save",
            json={
                "name": "key-account",
                "source": AT_75,
                "tests": TESTS_AT_75,
                "base_digest": base,
                "note": "db",
            },
            headers=AUTH,
        )
        assert res.status_code == 200, res.text
        assert await _served_digest(r) == res.json()["digest"]
        head = DbSource(pg_url).head()
        assert head is not None and head.info.version == 2
        assert head.files["key-account.yaml"] == AT_75
        listed = (await r.client.get("/v1/rulesets/key-account/versions", headers=AUTH)).json()
        assert [v["note"] for v in listed["versions"]] == ["db", ""]


async def test_the_page_says_how_to_build_it_when_it_is_not_built(tmp_path) -> None:
    settings = settings_for(tmp_path, studio_assets=tmp_path / "nowhere")
    async with running(settings) as r:
        res = await r.client.get("/studio")
        assert res.status_code == 503 and "make studio" in res.json()["detail"]


# ------------------------------------------------------------------------ spreadsheets


async def test_params_as_a_workbook_and_back_through_the_studio(studio) -> None:
    import base64
    import io

    from openpyxl import load_workbook

    res = await studio.client.post(
        "/v1/studio/params/export", json={"source": SOURCE}, headers=AUTH
    )
    assert res.status_code == 200 and res.headers["content-type"].startswith(
        "application/vnd.openxmlformats"
    )
    book = load_workbook(io.BytesIO(res.content))
    book["params"]["B2"] = 75
    out = io.BytesIO()
    book.save(out)
    body = {"source": SOURCE, "workbook": base64.b64encode(out.getvalue()).decode()}
    res = await studio.client.post("/v1/studio/params/import", json=body, headers=AUTH)
    assert res.status_code == 200, res.text
    assert res.json()["ok"] and res.json()["source"] == AT_75
    book["params"]["B2"] = "lots"
    out = io.BytesIO()
    book.save(out)
    body["workbook"] = base64.b64encode(out.getvalue()).decode()
    res = await studio.client.post("/v1/studio/params/import", json=body, headers=AUTH)
    got = res.json()
    assert res.status_code == 200 and got["ok"] is False and got["source"] == SOURCE
    assert got["problems"][0] | {"message": ""} == {
        "sheet": "params",
        "row": 2,
        "column": "B",
        "message": "",
    }


@pytest.mark.parametrize("workbook", ["not base64!", "bm90IGEgemlw"])
async def test_a_workbook_that_is_not_one_is_4xx_or_a_located_problem(studio, workbook) -> None:
    res = await studio.client.post(
        "/v1/studio/params/import", json={"source": SOURCE, "workbook": workbook}, headers=AUTH
    )
    if workbook == "not base64!":
        assert res.status_code == 422
    else:
        assert res.status_code == 200 and res.json()["problems"][0]["sheet"] == "(workbook)"
