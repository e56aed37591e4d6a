"""`make bench`: every path of kaq beside the in-process engine, measured in one run.

    .venv/bin/python benchmarks/bench.py            # the full run (about 20 minutes)
    .venv/bin/python benchmarks/bench.py --quick    # the same harness, tiny sizes (seconds)

Four suites (issue #12), each figure printed beside its yardstick from the same run:

1. engine: accounts/s on one core (CPU time of this process, median of --repeat runs) from
   parsed facts to the `full`, `summary` and `decision` views, and the bare durable_rules
   cycle (`benchmarks/engine.py`). The `full` rate is the yardstick of every other suite.
2. http: `kaq serve --workers 1` and `--workers 2`, decision log on (SQLite in a temporary
   folder), `POST /v1/evaluate` (full view) at open-loop fixed rates and at saturation
   (closed loop), latency p50/p95/p99; the load generator (`benchmarks/loadgen.py`) is its
   own process on loopback. The server's CPU time per request comes from /proc.
3. batch: a generated corpus (`kaq corpus generate --n N --seed 3`) streamed as NDJSON to
   `POST /v1/evaluate/batch` in each view (one worker, log on), and through `kaq evaluate`
   (`--jobs 1` and `2`, JSON Lines to a file): wall time, accounts/s, peak RSS of client and
   server (polled from /proc; the kernel's own peak where a process can be reaped).
4. soak: RSS and open file descriptors over N engine evaluations (a child process streaming
   the corpus) and over a fixed-rate HTTP run; the slope after warm-up and the growth from
   just after warm-up to the end, as %.

Writes `benchmarks/results.json` (`--out`), prints the table with the CPU model and Python
version, and each target of issue #12 as met / not met with the measured figure. Then it
checks its own output: every suite present, every figure positive, every ratio computed,
every verdict line accounted for; a failed check exits 1. The machine is shared: absolute
figures move with its load (printed at start and end); the ratios of one run are the point.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# kaq's packages first: this folder's engine.py must not stand in for the `engine` package
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _sibling(name: str) -> Any:
    """A module of this folder, loaded by its path under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


procstat = _sibling("procstat")

PY = sys.executable
KAQ = str(Path(sys.executable).parent / "kaq")
LOADGEN = str(HERE / "loadgen.py")
CORPUS = ROOT / "corpus" / "accounts-2000.jsonl"
VIEWS = ("full", "summary", "decision")
SUITES = ("http", "batch", "soak")  # beside the engine's, which is every other's yardstick

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "engine_n": 2000,
        "engine_repeat": 5,
        "rates": [200, 500, 1000],
        "rate_seconds": 20.0,
        "warm_seconds": 3.0,
        "sat_seconds": 20.0,
        "sat_conns": 16,
        "batch_n": 100_000,
        "flat_n": 10_000,
        "soak_engine_n": 1_000_000,
        "soak_http_seconds": 300.0,
        "soak_http_rate": 200,
        "soak_every_s": 2.0,
    },
    "quick": {
        "engine_n": 500,
        "engine_repeat": 3,
        "rates": [50, 100],
        "rate_seconds": 1.5,
        "warm_seconds": 0.5,
        "sat_seconds": 1.5,
        "sat_conns": 8,
        "batch_n": 1000,
        "flat_n": 250,
        "soak_engine_n": 3000,
        "soak_http_seconds": 4.0,
        "soak_http_rate": 50,
        "soak_every_s": 0.25,
    },
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- 1. engine ---------------------------------------------------------------------------


def engine_suite(sz: dict[str, Any]) -> dict[str, Any]:
    from engine import load_ruleset

    E = _sibling("engine")
    rs = load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    raws = [orjson.loads(x) for x in CORPUS.read_bytes().splitlines() if x.strip()]
    while len(raws) < sz["engine_n"]:
        raws += raws
    raws = raws[: sz["engine_n"]]
    for view in VIEWS:  # one untimed pass, as a running service has made
        E.view_rate(rs, raws, view)
    staged = E.stage_facts(rs, raws)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in (*VIEWS, "bare")}
    for _ in range(sz["engine_repeat"]):
        for view in VIEWS:
            runs[view].append(E.view_rate(rs, raws, view))
        runs["bare"].append((E.bare_floor(rs, staged), 0.0))
    rs.close()
    out: dict[str, Any] = {"accounts": len(raws), "repeat": sz["engine_repeat"]}
    for key, values in runs.items():
        cpu = [v[0] for v in values]
        out[key] = {
            "eval_per_s": statistics.median(cpu),
            "min": min(cpu),
            "max": max(cpu),
            "us_per_eval": 1e6 / statistics.median(cpu),
        }
        if key != "bare":
            out[key]["wall_eval_per_s"] = statistics.median(v[1] for v in values)
    for view in VIEWS:
        out[view]["ratio_to_bare"] = out[view]["eval_per_s"] / out["bare"]["eval_per_s"]
    return out


# -- the server --------------------------------------------------------------------------


class Server:
    """`kaq serve` on a free loopback port, decision log in SQLite under `folder`."""

    def __init__(self, folder: Path, workers: int):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.workers = folder, workers
        self.db = folder / "kaq.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (folder / "serve.log").open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAQ_")}
        self.proc = subprocess.Popen(
            [KAQ, "serve", "--port", str(self.port), "--workers", str(workers),
             "--db", f"sqlite:///{self.db}", "--rulesets", str(ROOT / "rulesets"),
             "--log-level", "warning"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=folder, env=env,
            start_new_session=True,
        )  # fmt: skip
        self.pid = self.proc.pid
        if not procstat.wait_for(self._ready, 90, 0.2):
            self.stop()
            raise SystemExit(f"kaq serve did not start:\n{self.text()[-3000:]}")
        if workers > 1:  # every worker up (a supervisor and its workers), then settled
            procstat.wait_for(lambda: len(procstat.tree(self.pid)) > workers, 60, 0.2)
            time.sleep(1.5)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"kaq serve exited:\n{self.text()[-3000:]}")
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def text(self) -> str:
        return (self.folder / "serve.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()

    def log_size(self) -> dict[str, Any]:
        """Decisions logged and bytes on disk per decision (call after stop)."""
        with closing(sqlite3.connect(self.db)) as conn:  # `with conn` alone does not close
            rows = conn.execute("SELECT COUNT(*) FROM log").fetchone()[0]
        size = sum(p.stat().st_size for p in self.folder.glob("kaq.db*") if p.name != "kaq.db-shm")
        return {"rows": rows, "bytes": size, "bytes_per_decision": size / max(rows, 1)}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadgen(*args: str, timeout: float = 300) -> dict[str, Any]:
    """Run the load generator in its own process; its JSON answer. The timeout is a bound
    beyond the run's own length (given as --seconds, or a whole stream for ndjson)."""
    if "--seconds" in args:
        timeout += float(args[args.index("--seconds") + 1])
    out = subprocess.run(
        [PY, LOADGEN, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"loadgen {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def with_server_cpu(srv: Server, run: Any) -> tuple[dict[str, Any], float]:
    cpu0 = procstat.cpu_seconds(srv.pid)
    result = run()
    return result, procstat.cpu_seconds(srv.pid) - cpu0


# -- 2. http -----------------------------------------------------------------------------


def http_suite(sz: dict[str, Any], tmp: Path, yard: float) -> dict[str, Any]:
    out: dict[str, Any] = {"yardstick": "engine.full.eval_per_s", "yardstick_value": yard}
    bodies = str(CORPUS)
    for workers in (1, 2):
        say(f"http: kaq serve --workers {workers}")
        srv = Server(tmp / f"http-w{workers}", workers)
        port = str(srv.port)
        w: dict[str, Any] = {"rates": []}
        try:
            with procstat.PeakRss(srv.pid, 0.25) as peak:
                common = ("--port", port, "--bodies", bodies)
                loadgen("closed", *common, "--conns", "8", "--seconds", str(sz["warm_seconds"]))
                for rate in sz["rates"]:
                    r, cpu = with_server_cpu(
                        srv,
                        partial(loadgen, "open", *common, "--rate", str(rate),
                                "--seconds", str(sz["rate_seconds"])),
                    )  # fmt: skip
                    r["server_cpu_us_per_req"] = cpu * 1e6 / max(r["ok"], 1)
                    r["ratio_to_inproc"] = r["achieved_rps"] / yard
                    w["rates"].append(r)
                    say(f"  {rate} req/s offered: p99 {r['p99_ms']:.1f} ms")
                r, cpu = with_server_cpu(
                    srv,
                    partial(loadgen, "closed", *common, "--conns", str(sz["sat_conns"]),
                            "--seconds", str(sz["sat_seconds"])),
                )  # fmt: skip
                r["server_cpu_us_per_req"] = cpu * 1e6 / max(r["ok"], 1)
                r["ratio_to_inproc"] = r["achieved_rps"] / yard
                r["per_worker_ratio_to_inproc"] = r["achieved_rps"] / workers / yard
                w["saturation"] = r
                say(f"  saturation: {r['achieved_rps']:.0f} req/s")
            w["server_peak_rss_kb"] = peak.peak_kb
        finally:
            srv.stop()
        w["decision_log"] = srv.log_size()
        out[f"workers_{workers}"] = w
    return out


# -- 3. batch ----------------------------------------------------------------------------


def generate_corpus(n: int, path: Path) -> Path:
    if not path.exists():
        subprocess.run(
            [KAQ, "corpus", "generate", "--n", str(n), "--seed", "3", "--out", str(path)],
            check=True,
            capture_output=True,
        )
    return path


def count_lines(path: Path) -> int:
    lines = 0
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            lines += block.count(b"\n")
    return lines


def kaq_evaluate(corpus: Path, jobs: int, view: str, out_file: Path) -> dict[str, Any]:
    """`kaq evaluate` as a child process: wall time, polled tree peak, kernel's peak."""
    with out_file.open("wb") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [KAQ, "evaluate", str(corpus), "--format", "jsonl", "--view", view,
             "--jobs", str(jobs)],
            stdout=sink, stderr=subprocess.PIPE,
        )  # fmt: skip
        with procstat.PeakRss(proc.pid, 0.1) as peak:
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"kaq evaluate --jobs {jobs} exited {proc.returncode}:\n{err[-2000:]}")
    lines = count_lines(out_file)
    size = out_file.stat().st_size
    out_file.unlink()
    return {
        "jobs": jobs,
        "view": view,
        "accounts": lines,
        "output_bytes": size,
        "wall_s": wall,
        "accounts_per_s": lines / wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_kb": peak.peak_kb,
        "peak_rss_one_process_kb": usage.ru_maxrss,
    }


def batch_yardstick(corpus: Path, n: int, repeat: int) -> dict[str, Any]:
    """The in-process rate of each view on the first `n` accounts of the batch's own corpus.

    The engine suite's yardstick is the shipped 2,000-account corpus; a generated corpus
    has other accounts (a decision on it cost 1.4x as much in one measurement here), so the
    batch paths are held to the engine's rate on the accounts they carry, in the same run.
    """
    from engine import load_ruleset

    E = _sibling("engine")
    rs = load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    with corpus.open("rb") as f:
        raws = [orjson.loads(line) for _, line in zip(range(n), f, strict=False)]
    out: dict[str, Any] = {"accounts": len(raws), "repeat": repeat}
    try:
        for view in VIEWS:
            E.view_rate(rs, raws, view)  # one untimed pass, as a running service has made
            rates = [E.view_rate(rs, raws, view)[0] for _ in range(repeat)]
            out[view] = {
                "eval_per_s": statistics.median(rates),
                "min": min(rates),
                "max": max(rates),
            }
    finally:
        rs.close()
    return out


def batch_suite(sz: dict[str, Any], tmp: Path, engine: dict[str, Any]) -> dict[str, Any]:
    n = sz["batch_n"]
    say(f"batch: kaq corpus generate --n {n} --seed 3")
    corpus = generate_corpus(n, tmp / f"accounts-{n}.jsonl")
    out: dict[str, Any] = {"accounts": n, "corpus_bytes": corpus.stat().st_size, "ndjson": {}}
    yard_n = min(n, sz["engine_n"])
    say(f"  in-process yardstick: the first {yard_n:,} accounts of that corpus, each view")
    out["yardstick"] = batch_yardstick(corpus, yard_n, sz["engine_repeat"])
    srv = Server(tmp / "batch", 1)
    try:
        for view in VIEWS:
            with procstat.PeakRss(srv.pid, 0.25) as peak:
                r, cpu = with_server_cpu(
                    srv,
                    partial(loadgen, "ndjson", "--port", str(srv.port), "--file", str(corpus),
                            "--view", view, "--timeout", "3600", timeout=3700),
                )  # fmt: skip
            r["server_peak_rss_kb"] = peak.peak_kb
            r["server_cpu_us_per_account"] = cpu * 1e6 / max(r["verdicts"], 1)
            yard = out["yardstick"][view]["eval_per_s"]
            r["yardstick_eval_per_s"] = yard
            r["ratio_to_inproc_same_view"] = r["accounts_per_s"] / yard
            r["ratio_to_inproc_full"] = r["accounts_per_s"] / out["yardstick"]["full"]["eval_per_s"]
            out["ndjson"][view] = r
            say(f"  NDJSON {view}: {r['wall_s']:.1f} s, {r['accounts_per_s']:.0f} accounts/s")
    finally:
        srv.stop()
    out["decision_log"] = srv.log_size()
    out["evaluate"] = {}
    for jobs in (1, 2):
        say(f"  kaq evaluate --jobs {jobs} (full view)")
        r = kaq_evaluate(corpus, jobs, "full", tmp / "evaluate-out.jsonl")
        r["ratio_to_inproc_full"] = r["accounts_per_s"] / out["yardstick"]["full"]["eval_per_s"]
        out["evaluate"][f"jobs_{jobs}"] = r
    out["evaluate"]["jobs_2"]["speedup_vs_jobs_1"] = (
        out["evaluate"]["jobs_2"]["accounts_per_s"] / out["evaluate"]["jobs_1"]["accounts_per_s"]
    )
    # memory flat in the input size: the same command on a tenth of the accounts
    small = tmp / f"accounts-first-{sz['flat_n']}.jsonl"
    with corpus.open("rb") as src, small.open("wb") as dst:
        for _, line in zip(range(sz["flat_n"]), src, strict=False):
            dst.write(line)
    r = kaq_evaluate(small, 1, "full", tmp / "evaluate-out.jsonl")
    r["rss_ratio_big_to_small"] = out["evaluate"]["jobs_1"]["peak_rss_kb"] / r["peak_rss_kb"]
    out["evaluate"]["jobs_1_small"] = r
    return out


# -- 4. soak -----------------------------------------------------------------------------


def trend(xs: list[float], ys: list[float], warm_fraction: float = 0.2) -> dict[str, float]:
    """Least-squares slope after warm-up, and growth from just after warm-up to the end."""
    start = int(len(xs) * warm_fraction)
    xs, ys = xs[start:], ys[start:]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs) or 1.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
    k = max(1, len(ys) // 10)
    first, last = statistics.median(ys[:k]), statistics.median(ys[-k:])
    return {
        "after_warmup": first,
        "end": last,
        "max": max(ys),
        "slope": slope,
        "growth_pct": (last - first) / first * 100 if first else 0.0,
    }


def soak_engine_child(n: int, corpus: Path, every: int) -> None:
    """Child mode: n full verdicts streaming `corpus` round and round; samples as JSON."""
    from engine import load_ruleset

    rs = load_ruleset(ROOT / "rulesets" / "key-account.yaml")
    me = os.getpid()
    samples = []
    done = 0
    t0 = time.process_time()
    while done < n:
        with corpus.open("rb") as f:
            for line in f:
                rs.view(rs.decide(orjson.loads(line)), "full")
                done += 1
                if done % every == 0:
                    samples.append((done, procstat.rss_kb(me), procstat.fds(me)))
                if done >= n:
                    break
    cpu = time.process_time() - t0
    rs.close()
    print(json.dumps({"evaluations": done, "cpu_s": cpu, "samples": samples}))


def soak_suite(sz: dict[str, Any], tmp: Path, corpus: Path) -> dict[str, Any]:
    n = sz["soak_engine_n"]
    say(f"soak: {n:,} engine evaluations (full view) in a child process")
    t0 = time.perf_counter()
    child = subprocess.run(
        [PY, __file__, "--soak-engine", str(n), "--soak-corpus", str(corpus)],
        capture_output=True, text=True, check=False, timeout=7200,
    )  # fmt: skip
    if child.returncode != 0:
        raise SystemExit(f"engine soak failed:\n{child.stderr[-3000:]}")
    data = json.loads(child.stdout.strip().splitlines()[-1])
    xs = [s[0] for s in data["samples"]]
    rss = trend(xs, [s[1] for s in data["samples"]])
    rss["slope_kb_per_100k_evals"] = rss.pop("slope") * 100_000
    fd = trend(xs, [s[2] for s in data["samples"]])
    fd["slope_per_100k_evals"] = fd.pop("slope") * 100_000
    engine = {
        "evaluations": data["evaluations"],
        "wall_s": time.perf_counter() - t0,
        "eval_per_s_cpu": data["evaluations"] / data["cpu_s"],
        "samples": len(xs),
        "rss_kb": rss,
        "fds": fd,
    }

    seconds, rate = sz["soak_http_seconds"], sz["soak_http_rate"]
    say(f"soak: {seconds:.0f} s of POST /v1/evaluate at {rate} req/s, one worker, log on")
    srv = Server(tmp / "soak", 1)
    samples: list[tuple[float, int, int]] = []
    try:
        load = subprocess.Popen(
            [PY, LOADGEN, "open", "--port", str(srv.port), "--bodies", str(corpus),
             "--rate", str(rate), "--seconds", str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        start = time.perf_counter()
        while load.poll() is None and time.perf_counter() - start < seconds + 120:
            at = time.perf_counter() - start
            samples.append((at, procstat.tree_rss_kb(srv.pid), procstat.tree_fds(srv.pid)))
            time.sleep(sz["soak_every_s"])
        stdout, stderr = load.communicate(timeout=60)
        if load.returncode != 0:
            raise SystemExit(f"soak load failed:\n{stderr[-3000:]}")
        run = json.loads(stdout.strip().splitlines()[-1])
    finally:
        srv.stop()
    samples = [s for s in samples if s[0] <= seconds]
    xs = [s[0] for s in samples]
    rss = trend(xs, [s[1] for s in samples])
    rss["slope_kb_per_min"] = rss.pop("slope") * 60
    fd = trend(xs, [s[2] for s in samples])
    fd["slope_per_min"] = fd.pop("slope") * 60
    http = {
        "seconds": seconds,
        "offered_rps": rate,
        "ok": run["ok"],
        "errors": run["errors"] + run["bad_status"],
        "p99_ms": run["p99_ms"],
        "samples": len(samples),
        "rss_kb": rss,
        "fds": fd,
        "decision_log": srv.log_size(),
    }
    return {"engine": engine, "http": http}


# -- targets, checks, table --------------------------------------------------------------


def targets(r: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """Issue #12's targets, each with the figure measured in this run."""
    out: list[dict[str, Any]] = []

    def add(
        name: str, value: float | None, limit: float, unit: str, ok: bool, note: str = ""
    ) -> None:
        out.append(
            {"target": name, "measured": value, "limit": limit, "unit": unit, "met": ok,
             "note": note}
        )  # fmt: skip

    if "batch" in r:
        ev, nd, n = r["batch"]["evaluate"], r["batch"]["ndjson"], r["batch"]["accounts"]
        size_note = f"at {n:,} accounts" + (
            " (quick sizes: not the target's size)" if quick else ""
        )
        mb = ev["jobs_1"]["peak_rss_kb"] / 1024
        add("kaq evaluate peak RSS < 300 MB", mb, 300, "MB", mb < 300, size_note)
        mb2 = ev["jobs_2"]["peak_rss_kb"] / 1024
        add("kaq evaluate --jobs 2 peak RSS (all processes) < 300 MB", mb2, 300, "MB", mb2 < 300,
            size_note)  # fmt: skip
        flat = ev["jobs_1_small"]["rss_ratio_big_to_small"]
        small = ev["jobs_1_small"]["accounts"]
        add(f"kaq evaluate RSS flat in input size ({n:,} vs {small:,})", flat, 1.05, "x",
            flat < 1.05, "1,000,000 not run: RSS at two sizes instead")  # fmt: skip
        x = ev["jobs_1"]["ratio_to_inproc_full"]
        add("kaq evaluate full view >= 80 % of in-process rate", x, 0.80, "ratio", x >= 0.80)
        x = ev["jobs_2"]["speedup_vs_jobs_1"]
        add("kaq evaluate --jobs 2 >= 1.7x --jobs 1", x, 1.7, "x", x >= 1.7)
        for view in VIEWS:
            x = nd[view]["ratio_to_inproc_same_view"]
            add(f"NDJSON {view} view, 1 worker, log on >= 70 % of in-process {view}", x, 0.70,
                "ratio", x >= 0.70)  # fmt: skip
        secs = nd["decision"]["wall_s"] * (100_000 / n)
        add("NDJSON 100,000 accounts, decision view <= 15 s", secs, 15, "s", secs <= 15,
            "extrapolated from the quick size" if n != 100_000 else "")  # fmt: skip
        log = r["batch"]["decision_log"]
        kb = log["bytes_per_decision"] / 1024
        add("decision log <= 2.5 KB per decision (SQLite file size / rows)", kb, 2.5, "KB",
            kb <= 2.5, f"{log['rows']:,} decisions of the batch suite")  # fmt: skip
    if "http" in r:
        http = r["http"]
        for workers in (1, 2):
            x = http[f"workers_{workers}"]["saturation"]["per_worker_ratio_to_inproc"]
            add(f"POST /v1/evaluate saturation per worker ({workers} worker(s)) >= 35 % of "
                "in-process full", x, 0.35, "ratio", x >= 0.35)  # fmt: skip
        at500 = [x for x in http["workers_2"]["rates"] if x["offered_rps"] == 500]
        if at500:
            p99 = at500[0]["p99_ms"]
            add("p99 <= 10 ms at 500 req/s offered, 2 workers", p99, 10, "ms", p99 <= 10)
        else:
            add("p99 <= 10 ms at 500 req/s offered, 2 workers", None, 10, "ms", False,
                "not measured: 500 req/s is not among the quick rates")  # fmt: skip
    if "soak" in r:
        soak = r["soak"]
        for kind in ("engine", "http"):
            for what in ("rss_kb", "fds"):
                g = soak[kind][what]["growth_pct"]
                add(f"soak {kind}: {what.split('_')[0].upper()} growth after warm-up < 5 %", g, 5,
                    "%", g < 5)  # fmt: skip
    return out


def check(r: dict[str, Any]) -> list[str]:
    """What is missing or impossible in the results; empty when they hold."""
    problems: list[str] = []

    def positive(path: str) -> None:
        node: Any = r
        for key in path.split("."):
            if not isinstance(node, dict) or key not in node:
                problems.append(f"missing: {path}")
                return
            node = node[key]
        if not isinstance(node, int | float) or not math.isfinite(node) or node <= 0:
            problems.append(f"not a positive number: {path} = {node!r}")

    suites = r.get("meta", {}).get("suites", SUITES)
    for suite in ("meta", "engine", *suites, "engine_end", "targets"):
        if suite not in r:
            problems.append(f"missing suite: {suite}")
    if problems:
        return problems
    for key in (*VIEWS, "bare"):
        positive(f"engine.{key}.eval_per_s")
        positive(f"engine_end.{key}.eval_per_s")
    for view in VIEWS:
        positive(f"engine.{view}.ratio_to_bare")
    if "http" in suites:
        for workers in (1, 2):
            w = f"http.workers_{workers}"
            rates = r["http"][f"workers_{workers}"]["rates"]
            if not rates:
                problems.append(f"{w}: no fixed-rate run")
            for x in rates:
                for k in ("achieved_rps", "p50_ms", "p95_ms", "p99_ms", "ratio_to_inproc",
                          "server_cpu_us_per_req"):  # fmt: skip
                    v = x.get(k)
                    if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                        problems.append(f"{w} at {x.get('offered_rps')} req/s: {k} = {v!r}")
                # past saturation an open loop may see requests time out: that is a result, but
                # every request sent must be accounted for, and most must have been answered
                if x["ok"] + x["bad_status"] + x["errors"] != x["sent"] or x["ok"] < x["sent"] / 2:
                    problems.append(
                        f"{w} at {x['offered_rps']} req/s: {x['ok']} ok, {x['bad_status']} other "
                        f"status, {x['errors']} failed of {x['sent']} sent"
                    )
            for k in ("achieved_rps", "p99_ms", "ratio_to_inproc", "per_worker_ratio_to_inproc"):
                positive(f"{w}.saturation.{k}")
            positive(f"{w}.server_peak_rss_kb")
    if "batch" in suites:
        n = r["batch"]["accounts"]
        for view in VIEWS:
            v = f"batch.ndjson.{view}"
            for k in ("wall_s", "accounts_per_s", "ratio_to_inproc_same_view", "server_peak_rss_kb",
                      "client_peak_rss_kb"):  # fmt: skip
                positive(f"{v}.{k}")
            got = r["batch"]["ndjson"][view]
            if got["verdicts"] != n or got["errors"]:
                problems.append(f"{v}: {got['verdicts']} verdicts, {got['errors']} errors of {n}")
        for jobs in ("jobs_1", "jobs_2", "jobs_1_small"):
            e = f"batch.evaluate.{jobs}"
            for k in ("wall_s", "accounts_per_s", "peak_rss_kb", "peak_rss_one_process_kb"):
                positive(f"{e}.{k}")
        for jobs in ("jobs_1", "jobs_2"):
            if r["batch"]["evaluate"][jobs]["accounts"] != n:
                got_lines = r["batch"]["evaluate"][jobs]["accounts"]
                problems.append(f"batch.evaluate.{jobs}: {got_lines} lines for {n} accounts")
        positive("batch.evaluate.jobs_2.speedup_vs_jobs_1")
        positive("batch.decision_log.bytes_per_decision")
    if "soak" in suites:
        for kind in ("engine", "http"):
            positive(f"soak.{kind}.rss_kb.after_warmup")
            positive(f"soak.{kind}.fds.after_warmup")
            if r["soak"][kind]["samples"] < 10:
                problems.append(f"soak.{kind}: {r['soak'][kind]['samples']} samples, too few")
        soaked = r["soak"]["http"]
        if soaked["ok"] <= 0 or soaked["errors"] > 0.01 * (soaked["ok"] + soaked["errors"]):
            problems.append(f"soak.http: {soaked['errors']} errors, {soaked['ok']} answered")
        if r["soak"]["engine"]["evaluations"] != r["meta"]["sizes"]["soak_engine_n"]:
            problems.append("soak.engine: not every evaluation ran")
    for t in r["targets"]:
        if not isinstance(t["met"], bool):
            problems.append(f"target without a verdict: {t['target']}")
        v = t["measured"]
        if v is None and "not measured" not in t["note"]:
            problems.append(f"target not measured: {t['target']}")
        elif v is not None and not (isinstance(v, int | float) and math.isfinite(v)):
            problems.append(f"target measured as {v!r}: {t['target']}")
    return problems


def _cpu_ratio(engine: dict[str, Any], view: str, us_per_account: float) -> str:
    """In-process CPU per account over the path's CPU per account: the ratio the path would
    reach with cores of its own, whatever else the machine runs (wall rates move with that)."""
    return f"{engine[view]['us_per_eval'] / us_per_account:.3f}"


def _kind(m: dict[str, Any]) -> str:
    suites = tuple(m.get("suites", SUITES))
    return "quick" if m["quick"] else "full" if suites == SUITES else "+".join(("engine", *suites))


def _lat(x: dict[str, Any]) -> str:
    return f"{x['p50_ms']:.1f} | {x['p95_ms']:.1f} | {x['p99_ms']:.1f}"


def table(r: dict[str, Any]) -> str:
    m, e = r["meta"], r["engine"]
    yard = e["full"]["eval_per_s"]
    lines = [
        f"kaq bench ({_kind(m)}) {m['date']}, commit {m['commit']}, {m['wall_s'] / 60:.0f} min",
        f"CPU {m['cpu']} x {m['cores']}, Python {m['python']}, load average "
        f"{m['loadavg_start']:.2f} at start, {m['loadavg_end']:.2f} at end; in-process full "
        f"{yard:,.0f} eval/s at start, {r['engine_end']['full']['eval_per_s']:,.0f} at the end",
        "",
        f"1. engine, one core, CPU time, {e['accounts']:,} accounts, median of {e['repeat']} "
        "[min-max]",
        "",
        "| path | eval/s | µs/eval | ratio to bare engine |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key in (*VIEWS, "bare"):
        x = e[key]
        ratio = f"{x['ratio_to_bare']:.2f}" if key != "bare" else "1"
        lines.append(
            f"| {key if key != 'bare' else 'bare durable_rules cycle'} | {x['eval_per_s']:,.0f} "
            f"[{x['min']:,.0f}-{x['max']:,.0f}] | {x['us_per_eval']:.0f} | {ratio} |"
        )
    if "http" in r:
        h = r["http"]
        lines += [
            "",
            "2. POST /v1/evaluate, full view, decision log on (SQLite); yardstick: in-process "
            f"full {yard:,.0f} eval/s",
            "",
            "| workers | load | achieved req/s | answered | p50 ms | p95 ms | p99 ms | "
            "server CPU µs/req | ratio to in-process full | CPU ratio |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for workers in (1, 2):
            w = h[f"workers_{workers}"]
            for x in w["rates"]:
                lines.append(
                    f"| {workers} | open loop {x['offered_rps']:,.0f} req/s | "
                    f"{x['achieved_rps']:,.0f} | {x['ok']:,}/{x['sent']:,} | {_lat(x)} | "
                    f"{x['server_cpu_us_per_req']:,.0f} | {x['ratio_to_inproc']:.3f} | "
                    f"{_cpu_ratio(e, 'full', x['server_cpu_us_per_req'])} |"
                )
            x = w["saturation"]
            lines.append(
                f"| {workers} | saturation, {x['connections']} connections | "
                f"{x['achieved_rps']:,.0f} | {x['ok']:,} | {_lat(x)} | "
                f"{x['server_cpu_us_per_req']:,.0f} | {x['ratio_to_inproc']:.3f} "
                f"({x['per_worker_ratio_to_inproc']:.3f} per worker) | "
                f"{_cpu_ratio(e, 'full', x['server_cpu_us_per_req'])} |"
            )
    if "batch" in r:
        b = r["batch"]
        # the batch's yardstick: the engine on the batch corpus's own accounts (older
        # results files have none: the engine suite's, on the shipped corpus)
        e = {
            v: {"us_per_eval": 1e6 / b["yardstick"][v]["eval_per_s"]}
            for v in VIEWS
        } if "yardstick" in b else e  # fmt: skip
        yard = 1e6 / e["full"]["us_per_eval"]
        lines += [
            "",
            f"3. batch, {b['accounts']:,} accounts (kaq corpus generate --seed 3); yardstick: "
            "the in-process rate of each view on the first "
            f"{b.get('yardstick', {}).get('accounts', 0) or 'N'} accounts of that corpus",
            "",
            "| path | wall s | accounts/s | yardstick eval/s | ratio | CPU ratio | "
            "client peak RSS MB | server peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for view in VIEWS:
            x = b["ndjson"][view]
            lines.append(
                f"| NDJSON over HTTP, {view}, 1 worker | {x['wall_s']:.1f} | "
                f"{x['accounts_per_s']:,.0f} | {x['yardstick_eval_per_s']:,.0f} ({view}) | "
                f"{x['ratio_to_inproc_same_view']:.3f} | "
                f"{_cpu_ratio(e, view, x['server_cpu_us_per_account'])} | "
                f"{x['client_peak_rss_kb'] / 1024:.0f} | {x['server_peak_rss_kb'] / 1024:.0f} |"
            )
        for key in ("jobs_1", "jobs_2", "jobs_1_small"):
            x = b["evaluate"][key]
            lines.append(
                f"| kaq evaluate --jobs {x['jobs']}, full, {x['accounts']:,} accounts | "
                f"{x['wall_s']:.1f} | {x['accounts_per_s']:,.0f} | {yard:,.0f} (full) | "
                f"{x['ratio_to_inproc_full']:.3f} | "
                f"{_cpu_ratio(e, 'full', x['cpu_s'] * 1e6 / x['accounts'])} | "
                f"{x['peak_rss_kb'] / 1024:.0f} "
                f"(largest process {x['peak_rss_one_process_kb'] / 1024:.0f}) | - |"
                if key != "jobs_1_small"
                else f"| kaq evaluate --jobs 1, full, {x['accounts']:,} accounts | "
                f"{x['wall_s']:.1f} | {x['accounts_per_s']:,.0f} | - | - | - | "
                f"{x['peak_rss_kb'] / 1024:.0f} | - |"
            )
        dl = b["decision_log"]
        lines.append("")
        lines.append(
            f"decision log after the batch suite: {dl['rows']:,} decisions, "
            f"{dl['bytes'] / 1e6:,.1f} MB, {dl['bytes_per_decision'] / 1024:.2f} KB per decision; "
            f"kaq evaluate --jobs 2 / --jobs 1: {b['evaluate']['jobs_2']['speedup_vs_jobs_1']:.2f}x"
        )
    if "soak" in r:
        s = r["soak"]
        se, sh = s["engine"], s["http"]
        lines += [
            "",
            "4. soak (growth: median of the last tenth of samples against the first tenth after a "
            "20 % warm-up)",
            "",
            "| run | RSS after warm-up MB | RSS at end MB | RSS slope | RSS growth | fds after "
            "warm-up | fds at end | fd growth |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {se['evaluations']:,} engine evaluations (full view, "
            f"{se['eval_per_s_cpu']:,.0f}/s) | {se['rss_kb']['after_warmup'] / 1024:.1f} | "
            f"{se['rss_kb']['end'] / 1024:.1f} | "
            f"{se['rss_kb']['slope_kb_per_100k_evals']:+,.0f} KB per 100k evals | "
            f"{se['rss_kb']['growth_pct']:+.2f} % | {se['fds']['after_warmup']:.0f} | "
            f"{se['fds']['end']:.0f} | {se['fds']['growth_pct']:+.2f} % |",
            f"| {sh['seconds']:.0f} s HTTP at {sh['offered_rps']} req/s, 1 worker, log on "
            f"({sh['ok']:,} ok, {sh['errors']:,} failed, p99 {sh['p99_ms']:.1f} ms) | "
            f"{sh['rss_kb']['after_warmup'] / 1024:.1f} | {sh['rss_kb']['end'] / 1024:.1f} | "
            f"{sh['rss_kb']['slope_kb_per_min']:+,.0f} KB/min | "
            f"{sh['rss_kb']['growth_pct']:+.2f} % | {sh['fds']['after_warmup']:.0f} | "
            f"{sh['fds']['end']:.0f} | {sh['fds']['growth_pct']:+.2f} % |",
        ]
    lines += [
        "",
        "ratio: the path's wall-clock rate over the in-process CPU-time rate (what the targets "
        "use); CPU ratio: in-process CPU per account over the path's CPU per account (server "
        "processes, or kaq evaluate and its workers), which does not move with the machine's "
        "load",
        "",
        "targets (issue #12)"
        + (": quick sizes, so these say only that the harness runs" if m["quick"] else ""),
    ]
    for t in r["targets"]:
        value = "n/a" if t["measured"] is None else f"{t['measured']:,.3g} {t['unit']}"
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"  {'met    ' if t['met'] else 'NOT met'}  {t['target']}: {value}{note}")
    return "\n".join(lines)


def meta(quick: bool, sz: dict[str, Any]) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "unknown",
        "command": "make bench-quick" if quick else "make bench",
        "quick": quick,
        "cpu": procstat.cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg()[0],
        "sizes": sz,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for make test")
    ap.add_argument("--out", type=Path, help="results file [benchmarks/results.json]")
    ap.add_argument(
        "--suites",
        default=",".join(SUITES),
        help="which of http,batch,soak to run beside the engine's (to measure one again; "
        "results then go to benchmarks/results-SUITES.json unless --out)",
    )
    ap.add_argument("--table", type=Path, help="print the table of a results file, and check it")
    ap.add_argument("--soak-engine", type=int, help=argparse.SUPPRESS)  # the soak's child
    ap.add_argument("--soak-corpus", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.soak_engine:
        soak_engine_child(args.soak_engine, args.soak_corpus, max(1, args.soak_engine // 200))
        return
    if args.table:
        results = json.loads(args.table.read_text())
        print(table(results))
        sys.exit(report_check(results))
    sz = SIZES["quick" if args.quick else "full"]
    suites = tuple(x for x in SUITES if x in args.suites.split(","))
    name = "quick" if args.quick else "" if suites == SUITES else "-".join(suites)
    out_file = args.out or HERE / (f"results-{name}.json" if name else "results.json")
    results: dict[str, Any] = {"meta": {**meta(args.quick, sz), "suites": suites}}
    tmp = Path(tempfile.mkdtemp(prefix="kaq-bench-"))
    started = time.perf_counter()
    # each suite's figures kept as soon as they are measured: a long run that fails late
    # still leaves what it measured (not checked, and removed once the run completes)
    partial_file = out_file.with_name(out_file.stem + ".partial.json")
    try:
        say("engine: views and the bare cycle, one core")
        results["engine"] = engine_suite(sz)
        yard = results["engine"]["full"]["eval_per_s"]
        partial_file.write_text(json.dumps(results, indent=1) + "\n")
        if "http" in suites:
            results["http"] = http_suite(sz, tmp, yard)
            partial_file.write_text(json.dumps(results, indent=1) + "\n")
        if "batch" in suites:
            results["batch"] = batch_suite(sz, tmp, results["engine"])
            partial_file.write_text(json.dumps(results, indent=1) + "\n")
        if "soak" in suites:
            corpus = generate_corpus(sz["batch_n"], tmp / f"accounts-{sz['batch_n']}.jsonl")
            results["soak"] = soak_suite(sz, tmp, corpus)
            partial_file.write_text(json.dumps(results, indent=1) + "\n")
        say("engine again: did the machine's speed move during the run?")
        results["engine_end"] = engine_suite(sz)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["meta"]["loadavg_end"] = os.getloadavg()[0]
    results["meta"]["wall_s"] = time.perf_counter() - started
    results["targets"] = targets(results, args.quick)
    out_file.write_text(json.dumps(results, indent=1, default=float) + "\n")
    partial_file.unlink(missing_ok=True)
    print(table(results))
    print(f"\nresults: {out_file} ({results['meta']['wall_s']:.0f} s)")
    sys.exit(report_check(json.loads(out_file.read_text())))


def report_check(results: dict[str, Any]) -> int:
    problems = check(results)
    if problems:
        print("\nthe results do not hold:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("results checked: every suite present, every figure positive, every ratio computed")
    return 0


if __name__ == "__main__":
    main()
