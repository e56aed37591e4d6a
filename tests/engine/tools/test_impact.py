"""`engine.tools.impact`: static ruleset diff, verdict comparison, sides from folders and git."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from builders import ROOT
from ruamel.yaml import YAML

from engine import load_rulesets
from engine.tools.corpus import generate_accounts
from engine.tools.impact import (
    ImpactError,
    analyze,
    compare_verdicts,
    read_side,
    render_markdown,
    render_text,
    ruleset_changes,
)

BASE_YAML = """\
kaq: 1
name: demo
params:
  min_score: {value: 70}
  min_margin: {value: 5}
  other: {value: 1}
derived:
  margin2: {expr: "gross_margin_pct * 2"}
rules:
  - id: guard.margin
    kind: guardrail
    when: "gross_margin_pct < min_margin"
    severity: warning
  - id: guard.double
    kind: guardrail
    when: "margin2 < other"
    severity: warning
  - id: segment.x
    kind: segment
    segment: x
    when: "a > 1"
decision:
  steps:
    - when: "score >= min_score"
      qualification: key_account
    - qualification: not_key_account
"""


def _load(text: str):
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml.load(text)


def _verdict(q: str, score: float = 50, guards: dict | None = None, trace: list | None = None):
    return {
        "qualification": q,
        "score": score,
        "segments": [],
        "stage": None,
        "guardrails": [{"rule": r, "severity": s} for r, s in (guards or {}).items()],
        "trace": trace or [],
    }


# --------------------------------------------------------------------------- static diff


def test_a_param_change_marks_the_rules_and_decision_that_read_it() -> None:
    head_yaml = BASE_YAML.replace("min_margin: {value: 5}", "min_margin: {value: 8}").replace(
        "min_score: {value: 70}", "min_score: {value: 75}"
    )
    changes = ruleset_changes(_load(BASE_YAML), _load(head_yaml))
    params = {p["name"]: (p["base"], p["head"]) for p in changes["params_changed"]}
    assert params == {"min_score": (70, 75), "min_margin": (5, 8)}
    changed = {r["id"]: r for r in changes["rules_changed"]}
    assert set(changed) == {"guard.margin"}
    assert changed["guard.margin"]["reads_changed"] == ["min_margin"]
    assert not changed["guard.margin"]["edited"]
    assert changes["decision"]["reads_changed"] == ["min_score"]
    assert "-  min_score: {value: 70}" not in changes["params_changed"][0]["diff"]
    assert "+min_score: {value: 75}" in changes["params_changed"][0]["diff"]


def test_a_param_read_through_a_derived_fact_marks_the_rule() -> None:
    base = BASE_YAML.replace('"gross_margin_pct * 2"', '"gross_margin_pct * other"')
    head = base.replace("other: {value: 1}", "other: {value: 2}")
    changes = ruleset_changes(_load(base), _load(head))
    assert [r["id"] for r in changes["rules_changed"]] == ["guard.double"]
    assert changes["rules_changed"][0]["reads_changed"] == ["margin2", "other"]


def test_rules_added_removed_and_edited_with_a_yaml_diff() -> None:
    head = BASE_YAML.replace('when: "a > 1"', 'when: "a > 2"').replace(
        "  - id: guard.double", "  - id: guard.renamed"
    )
    changes = ruleset_changes(_load(BASE_YAML), _load(head))
    assert changes["rules_added"] == ["guard.renamed"]
    assert changes["rules_removed"] == ["guard.double"]
    (edited,) = changes["rules_changed"]
    assert edited["id"] == "segment.x" and edited["edited"]
    assert '-    when: "a > 1"' in edited["diff"] and '+    when: "a > 2"' in edited["diff"]


def test_comment_only_changes_are_no_changes() -> None:
    head = BASE_YAML.replace('when: "a > 1"', 'when: "a > 1"  # tuned in 2026')
    changes = ruleset_changes(_load(BASE_YAML), _load(head))
    assert changes["rules_changed"] == [] and changes["params_changed"] == []


# --------------------------------------------------------------------------- verdict diff


def test_transitions_guardrails_and_scores_are_counted() -> None:
    accounts = [{"account_id": f"A{i}"} for i in range(5)]
    base = [
        _verdict("key_account", 70),
        _verdict("key_account", 80, {"guard.margin": "warning"}),
        _verdict("not_key_account", 30),
        _verdict("potential_key_account", 50, {"guard.margin": "warning"}),
        _verdict("insufficient_data", 20),
    ]
    head = [
        _verdict("potential_key_account", 70),
        _verdict("key_account", 85, {"guard.margin": "high", "guard.new": "warning"}),
        _verdict("not_key_account", 30),
        _verdict("potential_key_account", 45),
        _verdict("insufficient_data", 20),
    ]
    report = compare_verdicts(accounts, base, head, top=10)
    assert report["changed"] == 3
    assert report["qualification_moved"] == 1
    assert report["transitions"]["key_account"] == {
        "key_account": 1,
        "potential_key_account": 1,
        "not_key_account": 0,
        "insufficient_data": 0,
    }
    guards = {g["rule"]: g for g in report["guardrails"]}
    assert guards["guard.new"]["newly_fired"] == 1
    assert guards["guard.margin"]["cleared"] == 1
    assert guards["guard.margin"]["severity_changed"] == 1
    assert report["scores"] == {
        "changed": 2,
        "mean_delta": 0.0,
        "min_delta": -5.0,
        "max_delta": 5.0,
        "raised": 1,
        "lowered": 1,
    }
    # Moved accounts first, then the largest score shifts.
    assert [a["account_id"] for a in report["top"]] == ["A0", "A1", "A3"]
    assert [a["account_id"] for a in report["changed_accounts"]] == ["A0", "A1", "A3"]


def test_top_accounts_name_the_rules_and_facts_that_moved_them() -> None:
    t = lambda outcome, v: [  # noqa: E731
        {"rule": "guard.margin", "outcome": outcome, "facts": {"gross_margin_pct": v}},
        {"rule": "segment.x", "outcome": "not_fired", "facts": {"a": 0}},
    ]
    base = [_verdict("key_account", 80, trace=t("not_fired", 6))]
    head = [_verdict("key_account", 80, {"guard.margin": "warning"}, trace=t("fired", 6))]
    (top,) = compare_verdicts([{"account_id": "A"}], base, head)["top"]
    assert top["rules"] == [{"rule": "guard.margin", "base": "not_fired", "head": "fired"}]
    assert top["facts"] == {"gross_margin_pct": 6}


def test_a_qualification_move_without_rule_changes_shows_score_and_param() -> None:
    base = [_verdict("key_account", 70)]
    head = [_verdict("potential_key_account", 70)]
    (top,) = compare_verdicts(
        [{"account_id": "A"}], base, head, changed_params={"min_score": (70, 75)}
    )["top"]
    assert top["facts"] == {"score": 70, "min_score": {"base": 70, "head": 75}}


def test_an_account_one_side_rejects_counts_as_invalid() -> None:
    report = compare_verdicts(
        [{"account_id": "A"}], [_verdict("key_account")], [ValueError("bad facts")]
    )
    assert report["invalid"] == {"base": 0, "head": 1}
    assert report["transitions"]["key_account"]["invalid"] == 1


def test_renderers_show_headline_and_matrix() -> None:
    accounts = [{"account_id": "A"}, {"account_id": "B"}]
    report = {
        "ruleset": "demo",
        "base": {"label": "old", "revision": None, "version": "1"},
        "head": {"label": "new", "revision": None, "version": "2"},
        "changes": ruleset_changes({}, {}),
        **compare_verdicts(
            accounts,
            [_verdict("key_account", 70), _verdict("not_key_account")],
            [_verdict("potential_key_account", 70), _verdict("not_key_account")],
            order=["key_account", "potential_key_account", "not_key_account"],
        ),
        "elapsed_seconds": {"load": 0.1, "evaluate": 0.2, "total": 0.3},
        "evaluations_per_second": 10.0,
    }
    md = render_markdown(report)
    assert md.startswith("### ⚠️ kaq diff `demo`: 1 of 2 accounts change verdict")
    assert "| `key_account` | 0 | **1** | 0 | 1 |" in md
    assert "<details><summary>Top 1 changed accounts</summary>" in md
    text = render_text(report)
    assert "key_account → potential_key_account" in text and "elapsed: 0.30 s" in text


# --------------------------------------------------------------------------- sides


def test_read_side_from_a_git_revision_without_checkout(tmp_path: Path, git) -> None:
    (tmp_path / "rulesets").mkdir()
    f = tmp_path / "rulesets" / "demo.yaml"
    f.write_text(BASE_YAML)
    (tmp_path / "rulesets" / "demo.tests.yaml").write_text("ruleset: demo\ncases: []\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    f.write_text(BASE_YAML.replace("value: 70", "value: 75"))
    git(tmp_path, "commit", "-qam", "two")
    f.write_text("uncommitted")
    old = read_side("HEAD~1", repo=tmp_path)
    assert old.sources == {"demo.yaml": BASE_YAML}
    assert old.revision and len(old.revision) == 40
    new = read_side("HEAD", repo=tmp_path)
    assert "value: 75" in new.sources["demo.yaml"]
    assert f.read_text() == "uncommitted"  # the working tree is untouched
    with pytest.raises(ImpactError, match="neither a folder nor a git revision"):
        read_side("no-such-rev", repo=tmp_path)


def test_read_side_from_a_folder_leaves_test_cases_out() -> None:
    side = read_side(str(ROOT / "rulesets"))
    assert "key-account.yaml" in side.sources
    assert not any(name.endswith(".tests.yaml") for name in side.sources)


# --------------------------------------------------------------------------- end to end


def test_raising_the_key_account_threshold_moves_exactly_the_affected_accounts(
    tmp_path: Path,
) -> None:
    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    raised = _raise_threshold(text, 70, 75)
    (tmp_path / "key-account.yaml").write_text(raised, encoding="utf-8")
    accounts = generate_accounts(300, seed=3)

    report = analyze(read_side(str(ROOT / "rulesets")), read_side(str(tmp_path)), accounts)

    base_rs = load_rulesets(ROOT / "rulesets")["key-account"]
    head_rs = load_rulesets(tmp_path)["key-account"]
    expected = Counter()
    moved = []
    for a in accounts:
        b, h = base_rs.evaluate(a)["qualification"], head_rs.evaluate(a)["qualification"]
        expected[(b, h)] += 1
        if b != h:
            moved.append(a["account_id"])
    got = Counter(
        {(b, h): n for b, row in report["transitions"].items() for h, n in row.items() if n}
    )
    assert got == expected
    assert moved and set(expected) >= {("key_account", "potential_key_account")}
    assert report["qualification_moved"] == len(moved)
    assert [a["account_id"] for a in report["changed_accounts"]] == moved
    assert report["changes"]["decision"]["reads_changed"] == ["key_account_min_score"]


def _raise_threshold(text: str, old: int, new: int) -> str:
    head, sep, tail = text.partition("  key_account_min_score:")
    assert sep, "the ruleset has no key_account_min_score param"
    return head + sep + tail.replace(f"value: {old}", f"value: {new}", 1)


def test_worker_processes_give_the_same_report_as_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small chunks: many of them in flight, more than the window holds, results in order
    monkeypatch.setattr("engine.tools.impact.run.CHUNK", 7)
    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    (tmp_path / "key-account.yaml").write_text(_raise_threshold(text, 70, 75), encoding="utf-8")
    accounts = generate_accounts(200, seed=5)
    base, head = read_side(str(ROOT / "rulesets")), read_side(str(tmp_path))
    one = analyze(base, head, accounts)
    two = analyze(base, head, accounts, jobs=2, parallel_min=0)
    assert two["jobs"] == 2
    for key in ("transitions", "changed_accounts", "guardrails", "scores", "top"):
        assert one[key] == two[key], key


def test_identical_sides_are_evaluated_once() -> None:
    side = read_side(str(ROOT / "rulesets"))
    report = analyze(side, side, generate_accounts(20, seed=1))
    assert report["evaluations"] == 20 and report["changed"] == 0


def test_top_accounts_show_only_the_changed_params_their_rules_read() -> None:
    t = lambda outcome: [{"rule": "guard.margin", "outcome": outcome, "facts": {"m": 6}}]  # noqa: E731
    base = [_verdict("key_account", 80, trace=t("not_fired"))]
    head = [_verdict("key_account", 80, {"guard.margin": "warning"}, trace=t("fired"))]
    (top,) = compare_verdicts(
        [{"account_id": "A"}],
        base,
        head,
        changed_params={"min_margin": (5, 8), "min_score": (70, 75)},
        rule_params={"guard.margin": ["min_margin"]},
        decision_params=["min_score"],
    )["top"]
    assert top["facts"] == {"m": 6, "min_margin": {"base": 5, "head": 8}}


def test_qualifications_are_ordered_by_the_ruleset_not_by_a_built_in_list() -> None:
    """The engine names no policy: the order is the ruleset's ladder (best first), then the
    other qualifications of its decision steps, then `invalid`."""
    rs = load_rulesets(ROOT / "rulesets")["key-account"]
    try:
        order = rs.qualification_order()
    finally:
        rs.close()
    assert order == ["key_account", "potential_key_account", "not_key_account", "insufficient_data"]
    quals = ["not_key_account", "invalid", "key_account", "insufficient_data", "zeta"]
    report = compare_verdicts(
        [{"account_id": str(i)} for i in range(len(quals))],
        [_verdict(q) for q in quals],
        [_verdict(q) for q in reversed(quals)],
        order=order,
    )
    assert report["qualifications"] == [
        "key_account",
        "not_key_account",
        "insufficient_data",
        "zeta",
        "invalid",
    ]
    plain_order = compare_verdicts([{}], [_verdict("b")], [_verdict("a")])["qualifications"]
    assert plain_order == ["a", "b"]


def test_rules_moved_by_a_param_come_from_the_compiled_ruleset() -> None:
    """`names_read` is what the compiler resolved; the diff reads it instead of parsing the
    YAML again, and agrees with the YAML-only fallback on the shipped ruleset."""
    rs = load_rulesets(ROOT / "rulesets")["key-account"]
    try:
        reads = rs.names_read()
    finally:
        rs.close()
    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    base, head = _load(text), _load(text)
    head["params"]["key_account_min_score"]["value"] = 75
    head["params"]["min_recurring_years"]["value"] = 4
    compiled = ruleset_changes(base, head, reads)
    fallback = ruleset_changes(base, head)
    assert compiled == fallback
    moved = {r["id"]: r["reads_changed"] for r in compiled["rules_changed"]}
    assert moved == {"qualify.recurring_purchases": ["min_recurring_years"]}
    assert compiled["decision"]["reads_changed"] == ["key_account_min_score"]
    # A name the compiler says a rule reads counts even where the YAML does not show it.
    reads["rules"]["qualify.product_fit"].append("min_recurring_years")
    moved = {r["id"] for r in ruleset_changes(base, head, reads)["rules_changed"]}
    assert "qualify.product_fit" in moved


def test_top_accounts_are_the_same_when_streamed_and_few_are_kept() -> None:
    """The comparison keeps only `top` entries as accounts stream by; the ranking is the
    one a full sort of every changed account gives."""
    import random

    rng = random.Random(7)
    quals = ["key_account", "potential_key_account", "not_key_account"]
    base = [_verdict(rng.choice(quals), rng.randrange(0, 100)) for _ in range(400)]
    head = [_verdict(rng.choice(quals), rng.randrange(0, 100)) for _ in range(400)]
    accounts = [{"account_id": f"A{i}"} for i in range(400)]
    small = compare_verdicts(accounts, base, head, top=5)
    large = compare_verdicts(accounts, base, head, top=400)
    assert [t["account_id"] for t in small["top"]] == [t["account_id"] for t in large["top"][:5]]
    assert small["changed_accounts"] == large["changed_accounts"]
    assert len(large["top"]) == large["changed"]


def test_memory_does_not_grow_with_the_corpus(tmp_path: Path) -> None:
    """`analyze` reads an iterator once and keeps counts, not verdicts: four times the
    accounts may not cost four times the memory (holding every verdict did: 2.87 GB peak RSS
    on 100,000 accounts, against 61 MB streamed)."""
    import tracemalloc

    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    (tmp_path / "key-account.yaml").write_text(_raise_threshold(text, 70, 75), encoding="utf-8")
    base, head = read_side(str(ROOT / "rulesets")), read_side(str(tmp_path))
    template = generate_accounts(50, seed=11)

    def peak(n: int) -> int:
        accounts = (dict(template[i % len(template)], account_id=f"A{i}") for i in range(n))
        tracemalloc.start()
        try:
            report = analyze(base, head, accounts, top=3)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert report["accounts"] == n

    small, large = peak(200), peak(800)
    assert large < small * 1.3, (small, large)


def test_known_verdicts_are_reused_and_give_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The studio's cache: a side whose digest is in `known` is not evaluated again, and the
    report is the one a fresh evaluation gives."""
    import engine.tools.impact.run as run

    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    (tmp_path / "key-account.yaml").write_text(_raise_threshold(text, 70, 75), encoding="utf-8")
    base, head = read_side(str(ROOT / "rulesets")), read_side(str(tmp_path))
    accounts = generate_accounts(60, seed=4)
    fresh = analyze(base, head, accounts)
    known: dict = {}
    first = analyze(base, head, accounts, known=known)
    assert set(known) == {fresh["base"]["digest"], fresh["head"]["digest"]}
    assert all(len(v) == 60 for v in known.values())
    calls = 0
    real = run._evaluate

    def counting(rs, account):
        nonlocal calls
        calls += 1
        return real(rs, account)

    monkeypatch.setattr(run, "_evaluate", counting)
    del known[fresh["head"]["digest"]]  # the edited side changes; the served one is kept
    again = analyze(base, head, accounts, known=known)
    assert calls == 60  # the head side only
    for report in (first, again):
        for key in ("transitions", "changed_accounts", "guardrails", "scores", "top"):
            assert report[key] == fresh[key], key


def test_a_prepared_side_is_used_as_it_is_and_left_open(tmp_path: Path) -> None:
    """The studio hands over the rulesets it already prepared: not compiled again, not closed."""
    from engine import load_rulesets_from_sources

    text = (ROOT / "rulesets" / "key-account.yaml").read_text(encoding="utf-8")
    (tmp_path / "key-account.yaml").write_text(_raise_threshold(text, 70, 75), encoding="utf-8")
    base, head = read_side(str(ROOT / "rulesets")), read_side(str(tmp_path))
    accounts = generate_accounts(40, seed=6)
    fresh = analyze(base, head, accounts)
    head_rs = load_rulesets_from_sources(head.sources)["key-account"]
    try:
        given = analyze(base, head, accounts, prepared={"head": head_rs})
        assert head_rs.evaluate(accounts[0])["qualification"]  # still open
    finally:
        head_rs.close()
    for key in ("changes", "transitions", "changed_accounts", "top"):
        assert given[key] == fresh[key], key
