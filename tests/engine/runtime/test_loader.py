"""Loading rulesets from folders and texts: all or nothing, every file's problems at once."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import BASE, WHEN_SPEND, broken

import engine
from engine import RulesetError
from engine.runtime import prepared as prepared_module

# --------------------------------------------------------------------------- load_rulesets


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p


def test_load_rulesets_loads_every_valid_file(tmp_path):
    _write(tmp_path, "a.yaml", BASE.replace("name: broken", "name: first"))
    _write(tmp_path, "b.yml", BASE.replace("name: broken", "name: second"))
    _write(tmp_path, "first.tests.yaml", "not: a ruleset")
    loaded = engine.load_rulesets(tmp_path)
    try:
        assert sorted(loaded) == ["first", "second"]
    finally:
        for rs in loaded.values():
            rs.close()


def test_load_rulesets_duplicate_name_across_files_is_located_in_the_second(tmp_path):
    _write(tmp_path, "a.yaml", BASE)
    second = _write(tmp_path, "b.yaml", BASE)
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path)
    assert [(d.file, d.code, d.line, d.col) for d in info.value.diagnostics] == [
        (str(second), "ruleset.duplicate_name", 1, 1)
    ]


def test_load_rulesets_is_all_or_nothing_and_binds_nothing_when_a_file_fails(tmp_path, monkeypatch):
    closed: list[str] = []
    original = prepared_module.PreparedRuleset.close

    def spy(self):
        closed.append(self.name)
        original(self)

    monkeypatch.setattr(prepared_module.PreparedRuleset, "close", spy)
    _write(tmp_path, "a.yaml", BASE.replace("name: broken", "name: good-one"))
    bad = _write(tmp_path, "b.yaml", broken(WHEN_SPEND, "    when: anual_spend >= 1"))
    _write(
        tmp_path, "c.yaml", BASE.replace("name: broken", "name: other").replace("kaq: 1", "kaq: 3")
    )
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path)
    assert [(Path(d.file).name, d.code) for d in info.value.diagnostics] == [
        ("b.yaml", "expr.unknown_name"),
        ("c.yaml", "ruleset.shape"),
    ]
    assert info.value.diagnostics[0].file == str(bad)
    assert closed == []  # every file compiles before any is bound to the engine


def test_bind_rulesets_frees_what_it_bound_when_a_later_one_fails(tmp_path, monkeypatch):
    from engine.runtime import loader

    closed: list[str] = []
    original = prepared_module.PreparedRuleset.close

    def spy(self):
        closed.append(self.name)
        original(self)

    monkeypatch.setattr(prepared_module.PreparedRuleset, "close", spy)
    _write(tmp_path, "a.yaml", BASE.replace("name: broken", "name: first"))
    _write(tmp_path, "b.yaml", BASE.replace("name: broken", "name: second"))
    compiled = loader.compile_rulesets(loader.read_sources(tmp_path), base=tmp_path)
    real_bind = loader.bind

    def bind(c, path=None):
        if c.doc.name == "second":
            raise RulesetError([engine.Diagnostic("b.yaml", 1, 1, "ruleset.engine", "refused")])
        return real_bind(c, path)

    monkeypatch.setattr(loader, "bind", bind)
    with pytest.raises(RulesetError):
        loader.bind_rulesets(compiled)
    assert closed == ["first"]


def test_load_rulesets_from_sources_reports_every_file(tmp_path):
    sources = {
        "one.yaml": broken("    segment: big", "    segment: bgi"),
        "two.yaml": "- not a mapping",
    }
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets_from_sources(sources)
    assert [(d.file, d.code, d.line, d.col) for d in info.value.diagnostics] == [
        ("one.yaml", "ruleset.unknown_segment", 31, 14),
        ("two.yaml", "yaml.not_a_mapping", 1, 1),
    ]


def test_load_rulesets_of_a_missing_folder(tmp_path):
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path / "nope")
    assert [d.code for d in info.value.diagnostics] == ["ruleset.no_directory"]


def test_load_rulesets_of_an_empty_folder(tmp_path):
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path)
    assert [d.code for d in info.value.diagnostics] == ["ruleset.none"]


def test_load_rulesets_of_an_undecodable_file(tmp_path):
    (tmp_path / "a.yaml").write_bytes(b"kaq: 1\nname: \xff\xfe\n")
    with pytest.raises(RulesetError) as info:
        engine.load_rulesets(tmp_path)
    assert [d.code for d in info.value.diagnostics] == ["ruleset.unreadable"]
