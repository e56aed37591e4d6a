"""`engine.__all__` is the public surface: sorted, and every name in it exists."""

from __future__ import annotations

import engine


def test_all_is_sorted():
    assert engine.__all__ == sorted(engine.__all__)


def test_all_has_no_duplicates():
    assert len(set(engine.__all__)) == len(engine.__all__)


def test_every_exported_name_exists():
    missing = [name for name in engine.__all__ if not hasattr(engine, name)]
    assert missing == []


def test_every_public_module_attribute_is_exported_or_a_module():
    import types

    public = {
        name
        for name, value in vars(engine).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(engine.__all__)
