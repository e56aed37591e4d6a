"""Stage "lower": Kleene conditions into durable_rules conditions.

Each comparison the engine makes is `field op constant` over a flat stage fact: a name's
value, or a hoisted computation (arithmetic, `len`, `count`, membership of a list) that
the runtime computes into a field of its own, so no arithmetic or division ever reaches
the C engine. Conditions are written in negation normal form; see :class:`Lowering`.
"""

from __future__ import annotations

from typing import Any

from engine.lang import expr as E
from engine.lang.program import EngineRule, Program, Rule, Slot

TRUE_COND = {"$gte": {"kaq_stage": 0}}
FALSE_COND = {"$lt": {"kaq_stage": 0}}
_OP = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte", "!=": "$neq"}


class Lowering:
    """Turns Kleene conditions into durable_rules conditions in negation normal form.

    In NNF every negation sits on a comparison, where it flips the operator; the engine
    treats a comparison on an absent field as false, so the two-valued result of the NNF
    condition is true exactly when the Kleene value of the original is true.
    """

    def __init__(self, prog: Program):
        self.prog = prog
        self.by_name: dict[str, Slot] = {}
        self.by_node: dict[int, Slot] = {}
        self.level = 1

    def add(
        self, owner: str, role: str, level: int, node: E.Node, positive: bool, rule: Rule | None
    ) -> str:
        self.level = level
        cond = self.lower(node, positive)
        name = f"r{len(self.prog.engine_rules)}"
        self.prog.engine_rules[name] = EngineRule(name, level, cond, node, positive, owner, role)
        self.prog.atom_count += atoms(cond)
        if rule is not None:
            rule.engine[role] = name
        return name

    def _slot_for_name(self, name: str, type_: E.Type) -> str:
        key = f"{name}@{self.level}"
        s = self.by_name.get(key)
        if s is None:
            s = Slot(f"f{len(self.prog.slots)}", self.level, name=name, type=type_)
            self.by_name[key] = s
            self.prog.slots[s.field] = s
        return s.field

    def _slot_for_node(self, node: E.Node, diff: tuple[E.Node, E.Node] | None = None) -> str:
        key = id(node) * 31 + self.level
        s = self.by_node.get(key)
        if s is None:
            t = E.NUMBER if diff is not None else node.type
            s = Slot(f"f{len(self.prog.slots)}", self.level, node=node, diff=diff, type=t)
            self.by_node[key] = s
            self.prog.slots[s.field] = s
        return s.field

    def operand(self, n: E.Node) -> tuple[str, Any]:
        """('const', value) or ('field', field name)."""
        if isinstance(n, E.Const):
            return "const", n.value
        if isinstance(n, E.Name):
            if n.scope == "param":
                return "const", n.value
            return "field", self._slot_for_name(n.name, n.type)
        return "field", self._slot_for_node(n)

    def lower(self, n: E.Node, positive: bool) -> dict[str, Any]:
        if isinstance(n, E.And | E.Or):
            is_and = isinstance(n, E.And) == positive
            parts = [self.lower(i, positive) for i in n.items]
            return parts[0] if len(parts) == 1 else {"$and" if is_and else "$or": parts}
        if isinstance(n, E.Not):
            return self.lower(n.operand, not positive)
        if isinstance(n, E.Const):
            return TRUE_COND if bool(n.value) == positive else FALSE_COND
        if isinstance(n, E.Name):  # a boolean fact used as a condition
            if n.scope == "param":
                return TRUE_COND if bool(n.value) == positive else FALSE_COND
            return {self._slot_for_name(n.name, n.type): 1 if positive else 0}
        if isinstance(n, E.Cmp):
            return self._cmp(n, positive)
        if isinstance(n, E.In):
            if isinstance(n.container, E.ListLit):
                kind, v = self.operand(n.item)
                inside = positive != n.negated
                if kind == "const":
                    return TRUE_COND if ((v in n.container.values) == inside) else FALSE_COND
                if not n.container.values:
                    return FALSE_COND if inside else TRUE_COND
                atoms = [self._atom("==" if inside else "!=", v, c) for c in n.container.values]
                return atoms[0] if len(atoms) == 1 else {"$or" if inside else "$and": atoms}
            return {self._slot_for_node(n): 1 if positive else 0}
        if isinstance(n, E.Call):
            if n.func == "at_least":
                groups = E.at_least_expansion(n, negate=not positive)
                ors = []
                for g in groups:
                    parts = [self.lower(c, pol) for c, pol in g]
                    ors.append(parts[0] if len(parts) == 1 else {"$and": parts})
                return ors[0] if len(ors) == 1 else {"$or": ors}
            return {self._slot_for_node(n): 1 if positive else 0}
        raise TypeError(f"cannot lower {n!r}")

    def _cmp(self, n: E.Cmp, positive: bool) -> dict[str, Any]:
        op = n.op if positive else E.NEGATED_OP[n.op]
        lk, lv = self.operand(n.left) if _simple(n.left) else ("field", None)
        rk, rv = self.operand(n.right) if _simple(n.right) else ("field", None)
        if _simple(n.left) and _simple(n.right):
            if lk == "const" and rk == "const":
                res = E.compare(op, lv, rv)
                return TRUE_COND if res else FALSE_COND
            if lk == "field" and rk == "const":
                return self._atom(op, str(lv), rv)
            if lk == "const" and rk == "field":
                return self._atom(E.FLIPPED_OP[op], str(rv), lv)
        if n.left.type == E.NUMBER:
            # both sides per account: compare operand(a) - operand(b) with 0 (the sign of the
            # difference of two doubles is exact)
            lconst = isinstance(n.left, E.Const) or (
                isinstance(n.left, E.Name) and n.left.scope == "param"
            )
            rconst = isinstance(n.right, E.Const) or (
                isinstance(n.right, E.Name) and n.right.scope == "param"
            )
            if rconst and not lconst:
                return self._atom(op, self._slot_for_node(n.left), self.operand(n.right)[1])
            if lconst and not rconst:
                return self._atom(
                    E.FLIPPED_OP[op], self._slot_for_node(n.right), self.operand(n.left)[1]
                )
            return self._atom(op, self._slot_for_node(n, diff=(n.left, n.right)), 0)
        return {self._slot_for_node(n): 1 if positive else 0}

    def _atom(self, op: str, field_name: str, value: Any) -> dict[str, Any]:
        if isinstance(value, bool):
            value = 1 if value else 0
        if op == "==":
            return {field_name: value}
        return {_OP[op]: {field_name: value}}


def _simple(n: E.Node) -> bool:
    return isinstance(n, E.Const | E.Name)


def fields(cond: Any) -> set[str]:
    """The stage-fact fields a lowered condition compares (its atoms' fields)."""
    if isinstance(cond, dict):
        if "$and" in cond or "$or" in cond:
            return set().union(*(fields(c) for c in next(iter(cond.values()))))
        ((key, value),) = cond.items()
        return set(value) if key.startswith("$") else {key}
    return set()


def atoms(cond: Any) -> int:
    if isinstance(cond, dict):
        if "$and" in cond or "$or" in cond:
            return sum(atoms(c) for c in next(iter(cond.values())))
        return 1
    return 0
