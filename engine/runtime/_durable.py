"""The one seam to durable_rules: the only module that imports it.

durable_rules 2.0.28 is a C engine with known traps (../shared/spec/durable-rules-notes.md).
This module drives its C extension directly, without the stock `Host` and its background
dispatcher/timer threads (which segfault under concurrency), and guards each trap:

* **delete_state on a state where no rule fired segfaults** — states are not deleted after
  each evaluation: a session retracts the facts it asserted, leaving its thread's state
  empty for the next one (which also spares the engine building a state per evaluation).
  delete_state runs only when a retraction fails, and only once a rule has fired in the
  state: the catch-all fires on every stage-1 fact, and otherwise the session first asserts
  a stage-0 fact the catch-all fires on; if even that fails it abandons the session id (the
  state is never touched again).
* **leaked states** (the 1,025th live state raises MemoryError) — one session id, so one
  state per ruleset, per live thread: when a thread ends its id goes back to a pool and
  the next new thread takes it over with its empty state. Only the first
  :data:`MAX_KEPT_STATES` threads alive at once keep their state between evaluations;
  further threads delete theirs after each one (after a rule fired in it), so states never
  outnumber :data:`MAX_KEPT_STATES` plus the evaluations in progress. A forked child
  forgets the pool: ids that were in use in the parent are never reused there.
* **session ids collide by a 32-bit hash** (FNV-1a of the id; `t439599` and `t622382` share
  a state) — each thread gets a distinct short sid `t<n>` from a counter, below
  :data:`MAX_SIDS` where no two of them collide (ids of ended threads are reused first),
  and a thread evaluates one account at a time.
* **identical facts are "already observed" and then no rule fires** — every asserted fact
  carries an explicit, per-session unique ``id``.
* **reserved field names (`id`, `sid`)** — facts are sent under generated field names
  (``f0``, ``f1``, ...), never under the user's names.
* **floats with exponents (error 204), NaN/Infinity, integers beyond 64 bits** — values are
  written by :func:`encode_value`, which refuses non-finite numbers, caps magnitudes and
  never writes an exponent.
* **arithmetic and division inside conditions (SIGFPE, both sides firing)** — the compiler
  hoists every computation out; only ``field op constant`` comparisons reach the engine.
* **names registered twice / no unregister** — every compiled ruleset gets a unique name and
  is freed with ``delete_ruleset`` by :meth:`EngineRuleset.close`.
* **more than 512 conditions under one node hang ruleset creation** — :data:`MAX_ATOMS`
  caps the conditions of a ruleset before it is created.
* **a fact that matches too many conditions at once is refused (error 303)** — the engine
  walks its network of conditions (the alpha network) depth first on a fixed stack of
  :data:`MAX_ALPHA_STACK` nodes (``MAX_STACK_SIZE`` in its ``events.c``): every condition
  a node leads to that the fact matches is pushed before the next is looked at, so 64
  guardrails ``a > 0`` .. ``a > 63`` overflow it for ``a`` ≥ 64. :func:`alpha_stack_bound`
  models the network as the engine builds it and bounds the stack for any fact; the rules
  of one evaluation level are split over as many engine facts (stages) as it takes to keep
  every bound within the stack. A condition too wide on its own is refused at load.
* **"no rule matched" is a normal outcome**, not an error.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import durable_rules_engine as _dre

from engine.errors import EngineError
from engine.limits import MAX_MAGNITUDE

STAGE_FIELD = "kaq_stage"
CATCH_ALL = "c"
FIRST_STAGE = 1  # every evaluation asserts its stage-1 fact first; the catch-all fires on it
MAX_ATOMS = 480  # below the 512 where create_ruleset loops forever
MAX_FIELDS = 200  # below the ~254 properties where a fact is refused (error 302)
MAX_KEPT_STATES = 256  # threads alive at once that keep an empty state between evaluations
MAX_SIDS = 500_000  # t0 .. t622381 have distinct FNV-1a hashes; t622382 clashes with t439599
MAX_ALPHA_STACK = 64  # MAX_STACK_SIZE of durable_rules' events.c (error 303 beyond it)

_names = itertools.count()
_sids = itertools.count()
_local = threading.local()
_free_sids: list[str] = []  # ids of threads that ended; their states are empty


def encode_value(value: Any) -> str:
    """JSON text for one value the engine will see: no exponents, finite, bounded.

    The one encoder: :func:`encoder_for` only picks its fast path for a static type.
    """
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise EngineError(f"value of type {type(value).__name__} cannot reach the engine")


def _number(value: int | float) -> str:
    if type(value) is int and -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise EngineError("non-finite number cannot reach the engine")
    if abs(value) > MAX_MAGNITUDE:
        # Every constant a rule compares with is within ±MAX_MAGNITUDE (checked at load),
        # so clamping further out keeps each comparison's result; the `.0` makes the C
        # parser read a double instead of clamping a 64-bit integer.
        return "-100000000000000000.0" if value < 0 else "100000000000000000.0"
    if isinstance(value, int):
        return str(value)
    if value.is_integer():
        return str(int(value))  # -0.0 and 0.0 both write 0
    text = repr(value)
    return format(Decimal(text), "f") if "e" in text else text


def encoder_for(kind: str, values: tuple[str, ...] | None = None) -> Callable[[Any], str]:
    """:func:`encode_value` for values of one static type (bool, number, enum, string).

    Numbers keep a bounded memo of float texts: percentages and shares recur across
    accounts, and writing a float without an exponent is the slow part.
    """
    if kind == "bool":
        return lambda v: "1" if v else "0"
    if kind == "number":
        floats: dict[float, str] = {}

        def number(v: Any) -> str:
            if type(v) is int and -MAX_MAGNITUDE <= v <= MAX_MAGNITUDE:
                return str(v)
            if type(v) is float:
                text = floats.get(v)
                if text is None:
                    text = _number(v)
                    if len(floats) >= 4096:
                        floats.clear()
                    floats[v] = text
                return text
            return encode_value(v)

        return number
    if kind == "enum" and values:
        table = {v: json.dumps(v, ensure_ascii=False) for v in values}
        return lambda v: table.get(v) or encode_value(v)
    return encode_value


def encode_json(obj: Any) -> str:
    """Nested conditions as JSON, every scalar through :func:`encode_value`."""
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode_json(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(encode_json(v) for v in obj) + "]"
    return encode_value(obj)


class _ThreadSid:
    """A thread's session id; it returns to the pool when the thread (and its locals) end."""

    __slots__ = ("sid", "keep", "release", "__weakref__")

    def __init__(self, sid: str, keep: bool):
        self.sid = sid
        self.keep = keep  # keep the (emptied) state between evaluations, or delete it
        self.release = weakref.finalize(self, _release, sid, keep, os.getpid())


_kept = [0]  # live ids that keep their state


def _release(sid: str, keep: bool, pid: int) -> None:
    if os.getpid() != pid:
        return  # a thread of the parent process, dropped in a forked child: see below
    if keep:
        _kept[0] -= 1
    _free_sids.append(sid)


def _holder() -> _ThreadSid:
    holder = getattr(_local, "holder", None)
    if holder is None:
        try:
            sid = _free_sids.pop()
        except IndexError:
            n = next(_sids)
            if n >= MAX_SIDS:
                raise EngineError(
                    f"{MAX_SIDS:,} engine session ids used: more would share engine state"
                ) from None
            sid = f"t{n}"
        keep = _kept[0] < MAX_KEPT_STATES
        if keep:
            _kept[0] += 1
        holder = _local.holder = _ThreadSid(sid, keep)
    return holder


def _sid() -> str:
    return _holder().sid


def _forget_pool_in_child() -> None:
    # the child has copies of every thread's engine state but only the forking thread;
    # the others' states may hold facts of evaluations in progress. No id of the parent is
    # used again here: the pool is emptied, parent holders return nothing (see _release),
    # and the forking thread takes a new id on its next evaluation.
    _free_sids.clear()
    holder = getattr(_local, "holder", None)
    if holder is not None:
        holder.release.detach()
        _local.holder = None
    _kept[0] = 0


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _abandon_sid() -> None:
    """This thread's id is never used again (its state may be in an unknown condition)."""
    holder = getattr(_local, "holder", None)
    if holder is not None:
        holder.release.detach()
        if holder.keep:
            _kept[0] -= 1
        _local.holder = None


# --------------------------------------------------------------------------- alpha network


class _Alpha:
    """A node of the engine's alpha network: one condition, and the nodes it leads to."""

    __slots__ = ("atom", "children", "shared")

    def __init__(self, atom: tuple[str, str, str] | None):
        self.atom = atom  # (field, operator, value as JSON); None: root or forward node
        self.children: list[_Alpha] = []
        self.shared: dict[tuple[str, str, str], _Alpha] = {}  # atom -> child, for reuse


_OPS = {"$lt", "$lte", "$gt", "$gte", "$neq"}


def _atom_of(cond: Mapping[str, Any]) -> tuple[str, str, str]:
    ((key, value),) = cond.items()
    if key in _OPS:
        ((fname, v),) = value.items()
        return fname, key, encode_value(v)
    return key, "$eq", encode_value(value)


def _network(conds: list[Any]) -> _Alpha:
    """The alpha network durable_rules builds for these conditions (its rete.c createAlpha).

    `$and` chains its parts, each under the previous one; `$or` makes a new forward node
    that the end of every alternative leads to (always pushed: its field is never in a
    fact); a comparison reuses the parent's child with the same field, operator and value.
    """
    root = _Alpha(None)

    def create(cond: Any, parent: _Alpha) -> _Alpha:
        if "$and" in cond:
            node = parent
            for part in cond["$and"]:
                node = create(part, node)
            return node
        if "$or" in cond:
            forward = _Alpha(None)
            for part in cond["$or"]:
                create(part, parent).children.append(forward)
            return forward
        atom = _atom_of(cond)
        child = parent.shared.get(atom)
        if child is None:
            child = parent.shared[atom] = _Alpha(atom)
            parent.children.append(child)
        return child

    for cond in conds:
        create(cond, root)
    return root


def _most_matching(atoms: list[tuple[str, str, str]], stage: int) -> int:
    """How many of these sibling conditions one fact of `stage` can match at once.

    Conditions on different fields are independent; on one field, the most that hold
    together for any value (tried at every constant, just beside it and beyond all).
    A condition on the stage field is decided by `stage`.
    """
    by_field: dict[str, list[tuple[str, Any]]] = {}
    count = 0
    for fname, op, text in atoms:
        value = json.loads(text)
        if fname == STAGE_FIELD:
            count += _holds(op, stage, value)
            continue
        by_field.setdefault(fname, []).append((op, value))
    for conds in by_field.values():
        consts = [v for _op, v in conds]
        numbers = sorted({float(v) for v in consts if isinstance(v, int | float)})
        points: list[Any] = [object()]  # a value equal to no constant
        for x in numbers:
            points += [x, math.nextafter(x, -math.inf), math.nextafter(x, math.inf)]
        points += [v for v in consts if not isinstance(v, int | float)]
        count += max(sum(_holds(op, p, v) for op, v in conds) for p in points)
    return count


def _holds(op: str, x: Any, y: Any) -> bool:
    if op in ("$eq", "$neq"):
        same = type(x) is not object and (x == y if _comparable(x, y) else False)
        return same if op == "$eq" else not same
    if not (isinstance(x, int | float) and isinstance(y, int | float)):
        return True  # the engine's mixed comparisons: count it as matching (the worst case)
    return {"$lt": x < y, "$lte": x <= y, "$gt": x > y, "$gte": x >= y}[op]


def _comparable(x: Any, y: Any) -> bool:
    return isinstance(x, int | float) == isinstance(y, int | float)


def alpha_stack_bound(conds: list[Any], stage: int) -> int:
    """The deepest the engine's alpha stack can get for a fact of `stage`, for any values.

    The walk pops a node and pushes every child the fact matches; nodes still waiting
    below are the siblings of the path taken. So the bound is, over every path, the most
    children each node on it can push minus the one taken, plus what the last one pushes.
    It overflows when that exceeds :data:`MAX_ALPHA_STACK`.
    """
    root = _network(conds)
    pushes: dict[int, int] = {}
    alive: dict[int, list[_Alpha]] = {}

    def children(node: _Alpha) -> list[_Alpha]:
        key = id(node)
        if key not in alive:
            atoms = [c.atom for c in node.children if c.atom is not None]
            matched = [
                c
                for c in node.children
                if c.atom is None
                or c.atom[0] != STAGE_FIELD
                or _holds(c.atom[1], stage, json.loads(c.atom[2]))
            ]
            alive[key] = matched
            pushes[key] = _most_matching(atoms, stage) + sum(
                1 for c in node.children if c.atom is None
            )
        return alive[key]

    # longest path (pending nodes) over the acyclic network, in topological order
    order: list[_Alpha] = []
    state: dict[int, int] = {}
    stack: list[tuple[_Alpha, int]] = [(root, 0)]
    while stack:
        node, i = stack.pop()
        kids = children(node)
        if i == 0:
            if state.get(id(node)) is not None:
                continue
            state[id(node)] = 1
        if i < len(kids):
            stack.append((node, i + 1))
            if state.get(id(kids[i])) is None:
                stack.append((kids[i], 0))
        else:
            order.append(node)
    pending: dict[int, int] = {id(root): 0}
    worst = 0
    for node in reversed(order):
        here = pending.get(id(node))
        if here is None:
            continue
        n = pushes[id(node)]
        worst = max(worst, here + n)
        for child in alive[id(node)]:
            pending[id(child)] = max(pending.get(id(child), 0), here + n - 1)
    return worst


def _split_levels(
    rules: Mapping[str, tuple[int, Any]], catch_all: Any
) -> tuple[dict[int, list[int]], dict[str, int]]:
    """Engine stages per evaluation level, and each engine rule's stage.

    A level's rules share one stage (one asserted fact) while the alpha stack bound of
    that stage stays within the engine's; the first rule that would overflow it starts the
    next stage. Stage 1 also carries the catch-all.
    """
    stages: dict[int, list[int]] = {}
    stage_of: dict[str, int] = {}
    stage = FIRST_STAGE - 1
    for level in sorted({lv for lv, _c in rules.values()} | {FIRST_STAGE}):
        stage += 1
        stages[level] = [stage]
        current: list[Any] = [catch_all] if stage == FIRST_STAGE else []
        for name, (lv, cond) in rules.items():
            if lv != level:
                continue
            wrapped = {"$and": [{STAGE_FIELD: stage}, cond]}
            if alpha_stack_bound(current + [wrapped], stage) > MAX_ALPHA_STACK:
                if current:
                    stage += 1
                    stages[level].append(stage)
                    wrapped = {"$and": [{STAGE_FIELD: stage}, cond]}
                    current = []
                if alpha_stack_bound([wrapped], stage) > MAX_ALPHA_STACK:
                    raise EngineError(
                        f"rule {name}: one fact can match more than {MAX_ALPHA_STACK - 1} "
                        "of its conditions at once, more than the engine can follow"
                    )
            current.append(wrapped)
            stage_of[name] = stage
    return stages, stage_of


class EngineRuleset:
    """One compiled ruleset inside durable_rules.

    `rules` maps engine rule names (short ASCII, e.g. ``r12``) to (evaluation level,
    condition over flat facts whose fields are generated names). A level is asserted as
    one fact per engine stage (see :func:`_split_levels`); every rule also requires
    ``kaq_stage == its stage``.
    """

    def __init__(self, label: str, rules: Mapping[str, tuple[int, Any]], atom_count: int):
        if atom_count > MAX_ATOMS:
            raise EngineError(
                f"ruleset has {atom_count} conditions; the engine limit is {MAX_ATOMS}"
            )
        catch_all = {"$lte": {STAGE_FIELD: FIRST_STAGE}}  # stage 0 (fallback) and stage 1
        self.stages, stage_of = _split_levels(rules, catch_all)
        definition: dict[str, Any] = {CATCH_ALL: {"all": [{"m": catch_all}]}}
        for name, (_level, cond) in rules.items():
            parts = [{STAGE_FIELD: stage_of[name]}, cond]
            definition[name] = {"all": [{"m": {"$and": parts}}]}
        self.name = f"kaq_{label}_{next(_names)}"
        text = encode_json(definition)
        try:
            self._handle = _dre.create_ruleset(self.name, text)
        except _dre.error as exc:  # numeric error codes from the C code
            raise EngineError(f"durable_rules refused the ruleset: {exc}") from None
        self._lock = threading.Lock()
        self._closed = False
        self.definition = definition

    def session(self) -> Session:
        """A per-thread session; use as a context manager, one account at a time."""
        if self._closed:
            raise EngineError("ruleset is closed")
        return Session(self)

    def drive_bare(self, sid: str, accounts: list[list[str]]) -> int:
        """Benchmark floor: assert pre-encoded facts, run empty actions, retract them.

        ``accounts`` holds, per account, the full JSON texts of its stage facts (stage 1
        first, so the catch-all fires; all with session id `sid`). Returns how many actions
        ran.
        """
        handle, ran = self._handle, 0
        for texts in accounts:
            for text in texts:
                result = _dre.assert_fact(handle, text)
                if result[0] != 0:
                    continue
                started = _dre.start_action_for_state(handle, result[1])
                message = started[1] if started else None
                while message:
                    ran += 1
                    message = _dre.complete_and_start_action(handle, result[1])
            for text in texts:  # as a session ends: the state stays, empty
                _dre.retract_fact(handle, text)
        return ran

    def close(self) -> None:
        """Free the C ruleset (call only when no evaluation uses it any more)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                _dre.delete_ruleset(self._handle)


class Session:
    """Assert one account's stage facts; collects the names of the rules that fired.

    On exit every fact it asserted is retracted, so the thread's state is empty again.
    """

    __slots__ = ("_rs", "_sid", "_keep", "_n", "_fired", "_texts")

    def __init__(self, rs: EngineRuleset):
        self._rs = rs
        holder = _holder()
        self._sid, self._keep = holder.sid, holder.keep
        self._n = 0
        self._fired = False  # has any rule fired in this state (delete_state is safe)?
        self._texts: list[str] = []  # every fact sent, to retract on exit

    def __enter__(self) -> Session:
        if getattr(_local, "busy", False):
            raise EngineError("one thread evaluates one account at a time")
        _local.busy = True
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._texts:
                self._empty_state()
        finally:
            _local.busy = False

    def _empty_state(self) -> None:
        handle = self._rs._handle
        if self._keep:
            try:
                for text in self._texts:
                    _dre.retract_fact(handle, text)  # a fact never stored: a no-op
                return
            except _dre.error:
                pass
        # not kept, or a retraction failed: delete the state; delete_state segfaults on a
        # state where no rule fired, so make the catch-all fire first
        if not self._fired:
            try:
                self._assert(f'"{STAGE_FIELD}":0')
            except EngineError:
                pass
        if self._fired:
            try:
                _dre.delete_state(handle, self._sid)
                return
            except _dre.error:
                pass
        _abandon_sid()

    def assert_stage(self, stage: int, fields: Mapping[str, Any]) -> list[str]:
        """Assert the fact of one evaluation stage; return the engine rules that fired."""
        if len(fields) > MAX_FIELDS:
            raise EngineError(f"a fact with {len(fields)} fields exceeds {MAX_FIELDS}")
        return self.assert_encoded(stage, [f'"{k}":{encode_value(v)}' for k, v in fields.items()])

    def assert_level(self, level: int, parts: list[str]) -> list[str]:
        """Assert one evaluation level (one fact per engine stage of it); what fired."""
        stages = self._rs.stages[level]
        if len(stages) == 1:
            return self.assert_encoded(stages[0], parts)
        fired: list[str] = []
        for stage in stages:
            fired += self.assert_encoded(stage, parts)
        return fired

    def assert_encoded(self, stage: int, parts: list[str]) -> list[str]:
        """Like assert_stage, with each field already written as `"name":value`.

        The caller must have produced every value with :func:`encode_value`'s rules (the
        evaluator's slots do, with encoders chosen by static type).
        """
        if len(parts) > MAX_FIELDS:
            raise EngineError(f"a fact with {len(parts)} fields exceeds {MAX_FIELDS}")
        head = f'"{STAGE_FIELD}":{int(stage)}'
        fired = self._assert(",".join([head, *parts]))
        return [n for n in fired if n != CATCH_ALL]

    def _assert(self, body: str) -> list[str]:
        self._n += 1
        text = f'{{"sid":"{self._sid}","id":"k{self._n}",{body}}}'
        handle = self._rs._handle
        self._texts.append(text)
        try:
            result = _dre.assert_fact(handle, text)
        except _dre.error as exc:
            raise EngineError(f"durable_rules refused a fact: {exc}") from None
        fired: list[str] = []
        if result[0] != 0:
            # 1: no rule matched (normal); 2: already observed (cannot happen: ids are unique)
            if result[0] == 2:
                raise EngineError("durable_rules saw the same fact twice")
            return fired
        state = result[1]
        started = _dre.start_action_for_state(handle, state)
        message = started[1] if started else None
        if message:
            self._fired = True
        while message:
            # '{"r12":{...}}': the rule name is all we need; parsing the rest would
            # cost more than the engine itself.
            fired.append(message[2 : message.index('"', 2)])
            message = _dre.complete_and_start_action(handle, state)
        return fired
