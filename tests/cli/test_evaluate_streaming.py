"""`kaq evaluate` streams: complete, parseable output of large inputs in every format, flat
memory, order kept over several processes, and never exit 0 with an incomplete output."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
from builders import ROOT

from cli.evaluate import run
from cli.output import Output
from engine import load_rulesets
from engine.tools.corpus import iter_accounts, write_jsonl

KAQ = Path(sys.executable).parent / "kaq"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "accounts-20000.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        write_jsonl(iter_accounts(20_000, seed=12), fh)
    return path


def kaq(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(KAQ), *args], cwd=cwd, capture_output=True, timeout=600)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "table"])
def test_20000_accounts_stream_complete_and_parseable(corpus: Path, fmt: str) -> None:
    out = kaq("evaluate", str(corpus), "--format", fmt, "--view", "decision")
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout.decode("utf-8")
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
    elif fmt == "json":
        rows = json.loads(text)
    else:  # the decision view as a table: a header, then one line per account
        rows = text.splitlines()[1:]
        assert all(r.startswith("ACC-") for r in rows)
    assert len(rows) == 20_000
    if fmt != "table":
        assert [r["account_id"] for r in rows[:3]] == ["ACC-000001", "ACC-000002", "ACC-000003"]
        assert rows[-1]["account_id"] == "ACC-020000"


def test_two_jobs_give_the_same_bytes_in_the_same_order(corpus: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.jsonl"
    small.write_text("".join(corpus.read_text().splitlines(keepends=True)[:1000]))
    one = kaq("evaluate", str(small), "--format", "jsonl", "--view", "summary")
    two = kaq("evaluate", str(small), "--format", "jsonl", "--view", "summary", "--jobs", "2")
    assert one.returncode == two.returncode == 0, two.stderr[-2000:]
    assert one.stdout == two.stdout and one.stdout.count(b"\n") == 1000


def _peak_rss_kb(*args: str) -> int:
    code = (
        "import resource, subprocess, sys;"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL);"
        "assert p.returncode == 0;"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(KAQ), *args], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_memory_does_not_grow_with_the_number_of_accounts(corpus: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.jsonl"
    small.write_text("".join(corpus.read_text().splitlines(keepends=True)[:2000]))
    a = _peak_rss_kb("evaluate", str(small), "--format", "json", "--view", "decision")
    b = _peak_rss_kb("evaluate", str(corpus), "--format", "json", "--view", "decision")
    assert b < a * 1.15, (a, b)  # 10 times the accounts, not 10 times the memory


@pytest.fixture(scope="module")
def rs():
    sets = load_rulesets(ROOT / "rulesets")
    yield sets["key-account"]
    for r in sets.values():
        r.close()


def _run(rs, tmp_path: Path, write) -> tuple[int, bytes]:
    chunks: list[bytes] = []

    def recording(fd: int, data: memoryview) -> int:
        n = write(fd, data)
        chunks.append(bytes(data[:n]))
        return n

    src = ROOT / "examples" / "accounts.jsonl"
    code = run(src, rs, ROOT / "rulesets", "jsonl", "full", "en", 1, False, Output(1, recording))
    return code, b"".join(chunks)


def test_a_writer_that_takes_part_of_each_write_still_gets_everything(rs, tmp_path) -> None:
    def whole(fd: int, data: memoryview) -> int:
        return len(data)

    calls = {"n": 0}

    def partial(fd: int, data: memoryview) -> int:
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            return 0  # nothing this time: the writer must try again
        return max(1, len(data) // 7)

    code_whole, expected = _run(rs, tmp_path, whole)
    code_partial, got = _run(rs, tmp_path, partial)
    assert code_whole == code_partial == 0
    assert got == expected and expected.count(b"\n") == 10
    assert calls["n"] > 20


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EPIPE, errno.EIO])
def test_a_writer_that_fails_never_gives_exit_0(rs, tmp_path, capsys, err) -> None:
    written = {"n": 0}

    def failing(fd: int, data: memoryview) -> int:
        if written["n"] > 20_000:
            raise OSError(err, "simulated")
        n = min(len(data), 4096)
        written["n"] += n
        return n

    code, got = _run(rs, tmp_path, failing)
    assert code == 1
    assert "output incomplete" in capsys.readouterr().err
    assert 0 < len(got) < 200_000


def test_a_full_pipe_reader_that_leaves_is_reported(corpus: Path) -> None:
    """`kaq evaluate ... | head -1`: the output was cut by the reader; exit non-zero."""
    proc = subprocess.Popen(
        [str(KAQ), "evaluate", str(corpus), "--format", "jsonl", "--view", "decision"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1
    assert b"output incomplete" in err and b"reader closed the pipe" in err


def test_a_json_list_file_is_read_item_by_item(rs, tmp_path) -> None:
    text = (ROOT / "examples" / "accounts.jsonl").read_text(encoding="utf-8")
    facts = [json.loads(line) for line in text.splitlines() if line.strip()]
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"note": {"x": [1, 2]}, "accounts": facts}), encoding="utf-8")
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps(facts, indent=1), encoding="utf-8")
    outs = [
        kaq("evaluate", str(p), "--format", "jsonl", "--view", "decision")
        for p in (wrapped, listed)
    ]
    assert outs[0].returncode == outs[1].returncode == 0
    assert outs[0].stdout == outs[1].stdout and outs[0].stdout.count(b"\n") == len(facts)
