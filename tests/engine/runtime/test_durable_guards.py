"""One regression test per durable_rules trap that engine/runtime/_durable.py guards.

durable_rules 2.0.28 is a C engine: a broken guard can segfault, hang or exhaust memory, so
anything that could do that runs in a subprocess with a timeout.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
import threading
from typing import Any

import builders
import pytest
from builders import FIXTURES, ROOT

import engine
from engine.runtime import _durable as D
from engine.runtime.decide import slot_value

MINI = FIXTURES / "rulesets" / "mini.yaml"

FACTS = {
    "account_id": {"type": "string", "required": True},
    "n": {"type": "number"},
    "m": {"type": "number"},
    "big": {"type": "number", "min": -1e18, "max": 1e18},
    "b": {"type": "boolean"},
    "k": {"type": "enum", "values": ["x", "y"]},
}


def ruleset_text(rules: dict[str, str], facts: dict[str, Any] | None = None, **params: Any) -> str:
    """Guardrails `{id: when}` over these facts, with these params."""
    return builders.ruleset_text(
        builders.guardrails(rules),
        facts={k: v for k, v in (facts or FACTS).items() if k != "account_id"},
        name="guards",
        params={k: {"value": v} for k, v in params.items()},
    )


def outcomes(v: dict[str, Any]) -> dict[str, str]:
    return {t["rule"]: t["outcome"] for t in v["trace"]}


def run_script(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture
def prepared():
    made: list[engine.PreparedRuleset] = []

    def make(rules: dict[str, str], facts: dict[str, Any] | None = None, **params: Any):
        rs = engine.prepare("guards.yaml", ruleset_text(rules, facts, **params))
        made.append(rs)
        return rs

    yield make
    for rs in made:
        rs.close()


# --------------------------------------------------------------------------- states


def test_delete_state_after_no_match_does_not_segfault():
    script = """
        import json, sys
        import engine
        from engine.runtime import _durable as D
        rs = engine.prepare("g.yaml", sys.argv[1])
        for i in range(500):
            v = rs.evaluate({"account_id": f"A{i}", "n": -i})
            assert v["trace"][0]["outcome"] == "not_fired", v["trace"]
            v = rs.evaluate({"account_id": f"B{i}"})
            assert v["trace"][0]["outcome"] == "not_evaluable", v["trace"]
        engine_rs = rs.engine
        for i in range(500):
            with engine_rs.session() as s:
                assert s.assert_stage(1, {}) == []
        rs.close()
        print("done")
    """
    proc = run_script(script, ruleset_text({"never": "n > 1000000"}))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "done"


def _facts_in_state(rs: Any) -> list[Any]:
    return json.loads(D._dre.get_facts(rs.engine._handle, D._sid()))


def test_a_session_leaves_its_thread_state_empty(prepared):
    # states are kept per thread and emptied by retraction, not deleted per evaluation
    rs = prepared({"big_n": "n > 10", "kind_x": "k == 'x'"})
    for i in range(50):
        rs.evaluate({"account_id": f"A{i}", "n": i, "k": "x"})
        assert _facts_in_state(rs) == []
    # an exception after facts were asserted empties the state too
    with pytest.raises(RuntimeError), rs.engine.session() as s:
        s.assert_stage(1, {})
        assert len(_facts_in_state(rs)) == 1
        raise RuntimeError("boom")
    assert _facts_in_state(rs) == []


def test_a_failed_retraction_deletes_the_state_only_after_a_rule_fired():
    # delete_state segfaults on a state where no rule fired: when retraction fails, the
    # session must fire the catch-all (stage-0 fact) before deleting, unless a rule fired
    script = """
        import sys
        import engine
        from engine.runtime import _durable as D
        rs = engine.prepare("g.yaml", sys.argv[1])
        calls = []
        real_assert, real_delete = D._dre.assert_fact, D._dre.delete_state
        def failing_retract(handle, text):
            raise D._dre.error("simulated")
        def spy_assert(handle, text):
            calls.append("stage0" if '"kaq_stage":0' in text else "assert")
            return real_assert(handle, text)
        def spy_delete(handle, sid):
            calls.append("delete")
            return real_delete(handle, sid)
        D._dre.retract_fact = failing_retract
        D._dre.assert_fact = spy_assert
        D._dre.delete_state = spy_delete
        for i in range(1100):  # states deleted, not leaked: the 1,025th would fail
            v = rs.evaluate({"account_id": "A", "n": i % 3})
            assert v["trace"][0]["outcome"] == ("fired" if i % 3 == 2 else "not_fired")
        assert calls[-2:] == ["assert", "delete"], calls[-4:]  # the catch-all fired
        calls.clear()
        with rs.engine.session() as s:
            assert s.assert_stage(2, {}) == []  # no rule fires on a stage-2 fact
        assert calls == ["assert", "stage0", "delete"], calls
        print("done")
    """
    proc = run_script(script, ruleset_text({"pos": "n > 1"}))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "done"


def test_a_state_that_cannot_be_emptied_or_deleted_is_abandoned():
    # if retraction fails and no rule can be made to fire, the state is never touched
    # again: the thread takes a new session id, and evaluation goes on
    script = """
        import sys
        import engine
        from engine.runtime import _durable as D
        from engine.errors import EngineError
        rs = engine.prepare("g.yaml", sys.argv[1])
        real_assert, real_retract = D._dre.assert_fact, D._dre.retract_fact
        def refuse(*args):
            raise D._dre.error("simulated refusal")
        before = D._sid()
        D._dre.assert_fact = D._dre.retract_fact = refuse
        try:
            with rs.engine.session() as s:
                s.assert_stage(1, {})
        except EngineError:
            pass
        D._dre.assert_fact, D._dre.retract_fact = real_assert, real_retract
        after = D._sid()
        assert after != before, (before, after)
        assert before not in D._free_sids
        v = rs.evaluate({"account_id": "A", "n": 5})
        assert v["trace"][0]["outcome"] == "fired", v["trace"]
        print("done")
    """
    proc = run_script(script, ruleset_text({"pos": "n > 1"}))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "done"


def test_threads_that_end_hand_their_state_to_new_threads(prepared):
    # one state per live thread: 1,500 short-lived threads would pass the 1,024 live states
    # the engine allows if each kept its own
    rs = prepared({"big_n": "n > 10"})
    sids: set[str] = set()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            v = rs.evaluate({"account_id": "A", "n": i % 20})
            assert outcomes(v)["big_n"] == ("fired" if i % 20 > 10 else "not_fired")
            sids.add(D._sid())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for i in range(1500):
        t = threading.Thread(target=work, args=(i,))
        t.start()
        t.join()
    assert errors == []
    assert len(sids) <= 3, sorted(sids)


def test_states_do_not_leak_past_1024(prepared):
    rs = prepared({"big_n": "n > 10"})
    for i in range(2000):
        assert outcomes(rs.evaluate({"account_id": "A", "n": i % 20}))["big_n"] == (
            "fired" if i % 20 > 10 else "not_fired"
        )
    # a session left by an exception is deleted too
    for _ in range(1100):
        with pytest.raises(RuntimeError), rs.engine.session():
            raise RuntimeError("boom")
    assert outcomes(rs.evaluate({"account_id": "A", "n": 11}))["big_n"] == "fired"


def test_identical_facts_twice_still_fire(prepared):
    rs = prepared({"big_n": "n > 10", "kind_x": "k == 'x'"})
    facts = {"account_id": "A", "n": 11, "k": "x"}
    first = rs.evaluate(facts)
    for _ in range(5):
        assert rs.evaluate(dict(facts)) == first
    assert outcomes(first) == {"big_n": "fired", "kind_x": "fired"}
    # the same fields asserted twice in one session still fire both times
    name = first["trace"][0]["rule"]
    with rs.engine.session() as s:
        fields = {
            slot.field: slot_value(slot)({"n": 11, "k": "x"}) for slot in rs.program.slots.values()
        }
        once = s.assert_stage(1, fields)
        twice = s.assert_stage(1, fields)
    assert once and sorted(once) == sorted(twice), name


def test_one_thread_evaluates_one_account_at_a_time(prepared):
    rs = prepared({"big_n": "n > 10"})
    with rs.engine.session(), pytest.raises(engine.EngineError):
        rs.engine.session().__enter__()
    assert outcomes(rs.evaluate({"account_id": "A", "n": 11}))["big_n"] == "fired"


# --------------------------------------------------------------------------- field names


@pytest.mark.parametrize("name", ["id", "sid", "kaq_stage"])
def test_reserved_field_names_id_and_sid_are_rejected_as_fact_names(name):
    facts = {**FACTS, name: {"type": "number"}}
    with pytest.raises(engine.RulesetError) as info:
        engine.prepare("g.yaml", ruleset_text({"r": "n > 1"}, facts))
    assert "ruleset.reserved_name" in [d.code for d in info.value.diagnostics]


@pytest.mark.parametrize("name", ["id", "sid", "kaq_stage"])
def test_reserved_field_names_in_account_facts_are_refused(prepared, name):
    rs = prepared({"r": "n > 1"})
    with pytest.raises(engine.FactsError) as info:
        rs.evaluate({"account_id": "A", "n": 2, name: "t0"})
    assert [e["loc"] for e in info.value.errors] == [[name]]


@pytest.mark.parametrize("name", ["f0", "f1", "c", "r0", "t0", "k1"])
def test_user_names_like_the_generated_field_names_are_safe(prepared, name):
    facts = {**FACTS, name: {"type": "number"}}
    rs = prepared({"mine": f"{name} > 1", "other": "n > 1"}, facts)
    assert outcomes(rs.evaluate({"account_id": "A", name: 2, "n": 0})) == {
        "mine": "fired",
        "other": "not_fired",
    }
    assert outcomes(rs.evaluate({"account_id": "A", name: 0, "n": 2})) == {
        "mine": "not_fired",
        "other": "fired",
    }


def test_reserved_and_odd_strings_in_values_are_safe(prepared):
    facts = {**FACTS, "s": {"type": "string"}}
    rs = prepared({"eq": "s == 'a\"b\\\\c'", "cn": "s == '大客户'"}, facts)
    assert outcomes(rs.evaluate({"account_id": "A", "s": 'a"b\\c'}))["eq"] == "fired"
    assert outcomes(rs.evaluate({"account_id": "A", "s": "大客户"}))["cn"] == "fired"
    assert outcomes(rs.evaluate({"account_id": "A", "s": '"sid":"t0"'})) == {
        "eq": "not_fired",
        "cn": "not_fired",
    }


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1e-05, "0.00001"),
        (-2.5e-06, "-0.0000025"),
        (1.5e-05, "0.000015"),
        (123456789.125, "123456789.125"),
        (1e15, "1000000000000000"),
        (10**15, "1000000000000000"),
        (True, "1"),
        (False, "0"),
    ],
)
def test_float_with_exponent_is_encoded_without_exponent(value, text):
    assert D.encode_value(value) == text
    kind = "bool" if isinstance(value, bool) else "number"
    assert D.encoder_for(kind)(value) == text  # the fast path writes the same
    assert json.loads(text) == pytest.approx(float(value))


@pytest.mark.parametrize("value", [0.0, -0.0, 0, 5.0, -5.0, 2.5, 1e15, 1e-5, 10**15 + 1, -1e16])
def test_the_fast_number_encoder_writes_what_the_general_one_writes(value):
    """They disagreed: encoder_for('number')(-0.0) wrote -0.0, encode_value wrote 0."""
    assert D.encoder_for("number")(value) == D.encode_value(value)


def test_float_with_exponent_is_sent_without_exponent(prepared):
    rs = prepared(
        {"tiny": "n == tiny", "above": "n > tiny", "huge": "big > limit", "neg": "big < -limit"},
        tiny=1e-05,
        limit=1e15,
    )
    assert outcomes(rs.evaluate({"account_id": "A", "n": 1e-05, "big": 0})) == {
        "tiny": "fired",
        "above": "not_fired",
        "huge": "not_fired",
        "neg": "not_fired",
    }
    v = rs.evaluate({"account_id": "A", "n": 2e-05, "big": 1e16})
    assert outcomes(v) == {
        "tiny": "not_fired",
        "above": "fired",
        "huge": "fired",
        "neg": "not_fired",
    }
    assert v["trace"][2]["facts"] == {"big": 1e16}  # the verdict keeps the exact value
    v = rs.evaluate({"account_id": "A", "n": 1e-07, "big": -3e17})
    assert outcomes(v)["neg"] == "fired"
    assert outcomes(v)["above"] == "not_fired"  # 1e-07 rounds to 0 before comparing


def test_exponent_sized_arithmetic_matches_the_explanation(prepared):
    rs = prepared({"product": "n * m > 1000000000000000", "ratio": "n / m < 0.00001"})
    assert outcomes(rs.evaluate({"account_id": "A", "n": 1e15, "m": 10})) == {
        "product": "fired",
        "ratio": "not_fired",
    }
    assert outcomes(rs.evaluate({"account_id": "A", "n": 1, "m": 1e6})) == {
        "product": "not_fired",
        "ratio": "fired",
    }


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_rejected(prepared, bad):
    rs = prepared({"r": "n > 1"})
    with pytest.raises(engine.FactsError) as info:
        rs.evaluate({"account_id": "A", "n": bad})
    assert [e["loc"] for e in info.value.errors] == [["n"]]
    with pytest.raises(engine.EngineError):
        D.encode_value(bad)


@pytest.mark.parametrize("literal", [".nan", ".inf", "-.inf"])
def test_nan_and_infinity_params_are_rejected(literal):
    text = ruleset_text({"r": "n > p"}, p=1).replace('"value": 1', f'"value": {literal}')
    with pytest.raises(engine.RulesetError) as info:
        engine.prepare("g.yaml", text)
    assert [d.code for d in info.value.diagnostics] == ["ruleset.shape"]


def test_division_by_zero_never_reaches_the_engine():
    script = """
        import json, sys
        import engine
        rs = engine.prepare("g.yaml", sys.argv[1])
        text = json.dumps(rs.engine.definition)
        for op in ("$add", "$sub", "$mul", "$div"):
            assert op not in text, op
        for i in range(200):
            v = rs.evaluate({"account_id": "A", "n": i, "m": 0})
            got = {t["rule"]: t["outcome"] for t in v["trace"]}
            assert got == {"ratio": "not_evaluable", "literal": "not_evaluable",
                           "guarded": "not_fired"}, got
        v = rs.evaluate({"account_id": "A", "n": 6, "m": 3})
        print(json.dumps({t["rule"]: t["outcome"] for t in v["trace"]}))
    """
    rules = {"ratio": "n / m > 1", "literal": "n / 0 > 1", "guarded": "m != 0 and n / m > 1"}
    proc = run_script(script, ruleset_text(rules))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert json.loads(proc.stdout) == {
        "ratio": "fired",
        "literal": "not_evaluable",
        "guarded": "fired",
    }


def test_missing_operand_in_arithmetic_fires_neither_side(prepared):
    rs = prepared({"above": "n > m + 1", "below": "n < m + 1"})
    assert outcomes(rs.evaluate({"account_id": "A", "n": 5})) == {
        "above": "not_evaluable",
        "below": "not_evaluable",
    }


# --------------------------------------------------------------------------- rulesets


def test_ruleset_versions_coexist_and_close_frees_them():
    text = MINI.read_text(encoding="utf-8")
    old = engine.prepare("mini.yaml", text)
    new = engine.prepare("mini.yaml", text.replace("value: 1000000, unit: money", "value: 5"))
    facts = {"account_id": "A", "spend": 600000, "kind": "company"}
    try:
        assert old.engine.name != new.engine.name
        assert old.evaluate(facts)["criteria"][0]["outcome"] == "partly_met"
        assert new.evaluate(facts)["criteria"][0]["outcome"] == "met"
        old.close()
        old.close()  # idempotent
        with pytest.raises(engine.EngineError):
            old.evaluate(facts)
        assert new.evaluate(facts)["criteria"][0]["outcome"] == "met"
    finally:
        new.close()


def test_closed_rulesets_free_their_memory():
    script = """
        import sys
        import engine
        text = open(sys.argv[1], encoding="utf-8").read()
        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * 4096
        for _ in range(5):
            engine.prepare("m.yaml", text).close()
        start = rss()
        for _ in range(10):
            engine.prepare("m.yaml", text).close()
        closed = rss() - start
        kept = [engine.prepare("m.yaml", text) for _ in range(10)]
        held = rss() - start - closed
        print(closed, held)
    """
    proc = run_script(script, str(MINI))
    assert proc.returncode == 0, proc.stderr[-2000:]
    closed, held = map(int, proc.stdout.split())
    assert closed < held / 4, (closed, held)


def _atoms_ruleset(counts: list[int]) -> str:
    facts = {**FACTS, "w": {"type": "enum", "values": [f"v{i}" for i in range(200)]}}
    rules = {
        f"r{j}": "w in [" + ", ".join(f"'v{i}'" for i in range(n)) + "]"
        for j, n in enumerate(counts)
    }
    return ruleset_text(rules, facts)


def test_too_many_conditions_is_refused_before_create():
    script = """
        import sys
        import engine
        try:
            engine.prepare("g.yaml", sys.argv[1]).close()
            print("loaded")
        except engine.KaqError as exc:
            print("refused")
        rs = engine.prepare("g.yaml", sys.argv[2])
        v = rs.evaluate({"account_id": "A", "w": "v99"})
        print(sorted({t["outcome"] for t in v["trace"]}))
    """
    too_many = _atoms_ruleset([190, 190, 190])  # 570 conditions
    at_limit = _atoms_ruleset([190, 190, D.MAX_ATOMS - 380])
    proc = run_script(script, too_many, at_limit, timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:2] == ["refused", "['fired']"]


# --------------------------------------------------------------------------- threads


def _accounts(n: int) -> list[dict[str, Any]]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        facts: dict[str, Any] = {"account_id": f"T-{i}"}
        for name, make in (
            ("kind", lambda: rnd.choice(["company", "public", "ngo"])),
            ("spend", lambda: rnd.choice([0, 400000, 500000, 999999.5, 1000000, 2e7])),
            ("years", lambda: rnd.randint(0, 5)),
            ("cost", lambda: rnd.choice([0, 1000, 300000, 2e6])),
            ("margin_pct", lambda: rnd.choice([-5, 0, 4.9, 5, 30])),
            ("active", lambda: rnd.random() < 0.5),
            ("partner", lambda: rnd.random() < 0.5),
            ("tags", lambda: rnd.sample(["a", "b", "c", "d"], rnd.randint(0, 4))),
        ):
            if rnd.random() < 0.8:
                facts[name] = make()
        out.append(facts)
    return out


def test_eight_threads_get_the_same_verdicts():
    rs = engine.load_ruleset(MINI)
    try:
        accounts = _accounts(150)
        sequential = [rs.evaluate(a) for a in accounts]
        results: dict[int, list[dict[str, Any]]] = {}
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def work(t: int) -> None:
            try:
                start.wait()
                order = list(range(len(accounts)))
                random.Random(t).shuffle(order)
                got = [None] * len(accounts)
                for _ in range(2):
                    for i in order:
                        got[i] = rs.evaluate(accounts[i])
                results[t] = got  # type: ignore[assignment]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        assert not errors, errors
        assert sorted(results) == list(range(8))
        for t in range(8):
            assert results[t] == sequential, t
    finally:
        rs.close()


# --------------------------------------------------------------------------- no match


def test_no_rule_matched_is_normal(prepared):
    rs = prepared({"a": "n > 10", "b": "k == 'x'", "c": "b"})
    v = rs.evaluate({"account_id": "A", "n": 1, "k": "y", "b": False})
    assert outcomes(v) == {"a": "not_fired", "b": "not_fired", "c": "not_fired"}
    assert v["guardrails"] == [] and v["missing_facts"] == []
    with rs.engine.session() as s:
        assert s.assert_stage(1, {}) == []
        assert s.assert_stage(2, {"zz": 1}) == []


def _fnv1a_32(text: str) -> int:
    """The hash durable_rules finds a state by (FNV-1a, 32 bits, over the id's bytes)."""
    h = 2166136261
    for byte in text.encode():
        h ^= byte
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def test_session_ids_below_the_cap_never_share_a_state(prepared):
    hashes = {_fnv1a_32(f"t{n}") for n in range(D.MAX_SIDS)}
    assert len(hashes) == D.MAX_SIDS
    # the first clash of the scheme, past the cap: the engine really gives both one state
    assert _fnv1a_32("t439599") == _fnv1a_32("t622382")
    handle = prepared({"big_n": "n > 10"}).engine._handle
    D._dre.assert_fact(handle, '{"sid":"t439599","id":"x","kaq_stage":9}')
    assert '"sid":"t439599"' in D._dre.get_state(handle, "t622382").replace(" ", "")


def test_no_session_id_is_made_past_the_cap(monkeypatch):
    import itertools

    monkeypatch.setattr(D, "_sids", itertools.count(D.MAX_SIDS))
    monkeypatch.setattr(D, "_free_sids", [])
    result: list[BaseException] = []

    def fresh_thread() -> None:  # a thread without an id yet
        try:
            D._sid()
        except BaseException as exc:  # noqa: BLE001 - checked below
            result.append(exc)

    t = threading.Thread(target=fresh_thread)
    t.start()
    t.join()
    assert len(result) == 1 and isinstance(result[0], D.EngineError)
    assert "share engine state" in str(result[0])


def test_more_live_threads_than_kept_states_delete_theirs(prepared):
    # 1,100 threads alive at once, each after one evaluation: if each kept its state, the
    # 1,025th would raise MemoryError; past MAX_KEPT_STATES they delete theirs instead
    rs = prepared({"big_n": "n > 10"})
    done, release = threading.Barrier(1101), threading.Event()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            v = rs.evaluate({"account_id": "A", "n": i % 20})
            assert outcomes(v)["big_n"] == ("fired" if i % 20 > 10 else "not_fired")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        done.wait()
        release.wait()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1100)]
    for t in threads:
        t.start()
    done.wait()
    try:
        assert errors == []
        assert D._kept[0] <= D.MAX_KEPT_STATES
    finally:
        release.set()
        for t in threads:
            t.join()
    assert outcomes(rs.evaluate({"account_id": "A", "n": 11}))["big_n"] == "fired"


def test_a_forked_child_never_reuses_an_id_in_use_in_the_parent():
    # a thread is mid-evaluation when the process forks: in the child its id must not be
    # handed to a new thread, whose facts would meet the copied facts of that evaluation
    script = """
        import json, os, sys, threading
        import engine
        rs = engine.prepare("g.yaml", sys.argv[1])
        facts = {"account_id": "A", "n": 5}
        expected = rs.evaluate(facts)
        inside, release = threading.Event(), threading.Event()
        def busy():
            with rs.engine.session() as s:
                s.assert_stage(1, {})
                inside.set()
                release.wait()
        t = threading.Thread(target=busy)
        t.start()
        inside.wait()
        pid = os.fork()
        if pid == 0:
            out = []
            def child_work():
                try:
                    out.append(all(rs.evaluate(facts) == expected for _ in range(3)))
                except Exception as exc:
                    out.append(repr(exc))
            w = threading.Thread(target=child_work)
            w.start()
            w.join()
            os.write(1, (json.dumps(out) + "\\n").encode())
            os._exit(0)
        os.waitpid(pid, 0)
        release.set()
        t.join()
    """
    proc = run_script(script, ruleset_text({"pos": "n > 1"}))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[true]", proc.stdout


# --------------------------------------------------------------------------- alpha stack


def _raw_ruleset(conds: dict[str, Any]) -> Any:
    """A durable_rules ruleset of these stage-1 conditions as they are, with no splitting."""
    definition: dict[str, Any] = {D.CATCH_ALL: {"all": [{"m": {"$lte": {D.STAGE_FIELD: 1}}}]}}
    for name, cond in conds.items():
        definition[name] = {"all": [{"m": {"$and": [{D.STAGE_FIELD: 1}, cond]}}]}
    return D._dre.create_ruleset(f"raw_{next(D._names)}", D.encode_json(definition)), definition


def _refuses(handle: Any, fields: dict[str, Any]) -> bool:
    body = ",".join(f'"{k}":{D.encode_value(v)}' for k, v in fields.items())
    try:
        result = D._dre.assert_fact(handle, f'{{"sid":"raw","id":"x1","kaq_stage":1,{body}}}')
    except D._dre.error as exc:
        assert "303" in str(exc), exc
        return True
    D._dre.retract_fact(handle, f'{{"sid":"raw","id":"x1","kaq_stage":1,{body}}}')
    assert result[0] in (0, 1)
    return False


@pytest.mark.parametrize(
    ("shape", "per_rule"),
    [("f0 > i", 1), ("f0 > i or f1 > i", 2)],
)
def test_alpha_stack_bound_is_exact_where_every_condition_can_hold(shape: str, per_rule: int):
    """The model of the engine's alpha walk says 303 exactly when the engine says it.

    k rules all true at once push k (or 2k) nodes under the stage node, beside the
    catch-all: the bound is per_rule × k + 1, and the engine's stack holds 64.
    """
    for k in range(28, 70):
        if shape == "f0 > i":
            conds = {f"r{i}": {"$gt": {"f0": i}} for i in range(k)}
        else:
            conds = {f"r{i}": {"$or": [{"$gt": {"f0": i}}, {"$gt": {"f1": i}}]} for i in range(k)}
        handle, definition = _raw_ruleset(conds)
        try:
            bound = D.alpha_stack_bound([r["all"][0]["m"] for r in definition.values()], 1)
            assert bound == per_rule * k + 1
            assert _refuses(handle, {"f0": 1000, "f1": 1000}) == (bound > D.MAX_ALPHA_STACK), k
        finally:
            D._dre.delete_ruleset(handle)


def test_alpha_stack_bound_never_lets_the_engine_overflow_on_random_rulesets():
    """Wherever the bound is within the stack, no fact makes the engine refuse (error 303)."""
    rng = random.Random(303)
    fields = ["f0", "f1", "f2"]

    def atom() -> dict[str, Any]:
        op = rng.choice(["$gt", "$gte", "$lt", "$lte", "$neq", "=="])
        value = rng.randint(0, 9)
        field = rng.choice(fields)
        return {field: value} if op == "==" else {op: {field: value}}

    def cond(depth: int) -> dict[str, Any]:
        if depth == 0 or rng.random() < 0.4:
            return atom()
        parts = [cond(depth - 1) for _ in range(rng.randint(2, 3))]
        return {rng.choice(["$and", "$or"]): parts}

    checked = 0
    for _ in range(60):
        conds = {f"r{i}": cond(3) for i in range(rng.randint(5, 40))}
        handle, definition = _raw_ruleset(conds)
        try:
            bound = D.alpha_stack_bound([r["all"][0]["m"] for r in definition.values()], 1)
            if bound > D.MAX_ALPHA_STACK:
                continue
            checked += 1
            for _ in range(30):
                facts = {f: rng.randint(-1, 10) for f in fields}
                assert not _refuses(handle, facts), (bound, conds, facts)
        finally:
            D._dre.delete_ruleset(handle)
    assert checked >= 20


def test_many_rules_firing_on_one_fact_are_split_over_engine_stages(prepared):
    """70 guardrails `a > i` (the audit's ruleset) answered 303 for every a ≥ 64."""
    facts = {"account_id": {"type": "string", "required": True}, "a": {"type": "number"}}
    rs = prepared({f"g{i}": f"a > {i}" for i in range(70)}, facts)
    assert len(rs.engine.stages[1]) == 2
    for a in (0, 1, 62, 63, 64, 65, 69, 70, 1000):
        v = rs.evaluate({"account_id": "A", "a": a})
        fired = {t["rule"] for t in v["trace"] if t["outcome"] == "fired"}
        assert fired == {f"g{i}" for i in range(70) if a > i}, a


def test_exclusive_conditions_on_one_field_share_a_stage(prepared):
    """`k == v` for 70 values can match one at a time: no split is needed."""
    values = [f"v{i}" for i in range(70)]
    facts = {
        "account_id": {"type": "string", "required": True},
        "k": {"type": "enum", "values": values},
    }
    rs = prepared({f"g{i}": f"k == '{v}'" for i, v in enumerate(values)}, facts)
    assert rs.engine.stages == {1: [1]}
    v = rs.evaluate({"account_id": "A", "k": "v69"})
    assert [t["rule"] for t in v["trace"] if t["outcome"] == "fired"] == ["g69"]


def test_a_condition_too_wide_for_the_engine_is_located_at_its_rule(monkeypatch):
    from engine.lang import compile as C

    monkeypatch.setattr(C, "MAX_ALPHA_STACK", 3)
    text = ruleset_text({"fine": "n > 1", "wide": "n > 1 or m > 1 or b or k == 'x'"})
    with pytest.raises(engine.RulesetError) as info:
        engine.prepare("wide.yaml", text)
    assert [d.code for d in info.value.diagnostics] == ["ruleset.too_wide"]
