"""What applying a policy document would change: rules and limits added, removed and
changed (by id, with the fields that differ), like a `terraform plan`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Changes(BaseModel):
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    changed: dict[str, list[str]] = Field(
        default_factory=dict, description="Id → the fields that differ."
    )

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


class Plan(BaseModel):
    rules: Changes = Field(default_factory=Changes)
    limits: Changes = Field(default_factory=Changes)
    settings: list[str] = Field(
        default_factory=list, description="Top-level settings that differ (default, costs)."
    )
    reordered: bool = Field(False, description="Rules in another order (precedence is by effect).")

    @property
    def empty(self) -> bool:
        return self.rules.empty and self.limits.empty and not self.settings and not self.reordered

    def lines(self) -> list[str]:
        """The plan as text: ``+ rule x``, ``- limit y``, ``~ rule z (targets)``."""
        out: list[str] = []
        for kind, changes in (("rule", self.rules), ("limit", self.limits)):
            out += [f"+ {kind} {i}" for i in changes.added]
            out += [f"- {kind} {i}" for i in changes.removed]
            out += [f"~ {kind} {i} ({', '.join(f)})" for i, f in changes.changed.items()]
        out += [f"~ {name}" for name in self.settings]
        if self.reordered:
            out.append("~ rule order")
        return out


def _changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> Changes:
    before = {item["id"]: item for item in old}
    after = {item["id"]: item for item in new}
    changed = {}
    for key in after.keys() & before.keys():
        fields = sorted(
            f
            for f in before[key].keys() | after[key].keys()
            if before[key].get(f) != after[key].get(f)
        )
        if fields:
            changed[key] = fields
    return Changes(
        added=[k for k in after if k not in before],
        removed=[k for k in before if k not in after],
        changed={k: changed[k] for k in after if k in changed},
    )


def plan(old: dict[str, Any], new: dict[str, Any]) -> Plan:
    """The changes from ``old`` to ``new`` (canonical documents)."""
    rules = _changes(old.get("rules", []), new.get("rules", []))
    kept = [
        r["id"] for r in new.get("rules", []) if r["id"] in {o["id"] for o in old.get("rules", [])}
    ]
    was = [r["id"] for r in old.get("rules", []) if r["id"] in set(kept)]
    return Plan(
        rules=rules,
        limits=_changes(old.get("limits", []), new.get("limits", [])),
        settings=[k for k in ("default", "costs") if old.get(k) != new.get(k)],
        reordered=kept != was,
    )
