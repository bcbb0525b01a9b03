"""Entry-point registries: everything pluggable, the built-ins included, is found here.

A third-party package adds a command, model, neuron, dataset, compile target or recipe folder by
declaring an entry point in one of the groups below; nothing else is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from snnctl.errors import UserError

GROUPS: dict[str, str] = {
    "commands": "snnctl.commands",
    "models": "snnctl.models",
    "neurons": "snnctl.neurons",
    "datasets": "snnctl.datasets",
    "targets": "snnctl.targets",
    "recipes": "snnctl.recipes",
}


@dataclass(frozen=True)
class Entry:
    """One registered plugin: its name, where it points and which distribution provides it."""

    kind: str
    name: str
    value: str
    package: str

    def load(self) -> Any:
        return EntryPoint(name=self.name, value=self.value, group=GROUPS[self.kind]).load()


def _package_of(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "?"


@cache
def entries(kind: str) -> dict[str, Entry]:
    """All entries of one kind, by name. The first distribution to claim a name wins."""
    found: dict[str, Entry] = {}
    for ep in entry_points(group=GROUPS[kind]):
        found.setdefault(ep.name, Entry(kind, ep.name, ep.value, _package_of(ep)))
    return dict(sorted(found.items()))


def get(kind: str, name: str) -> Entry:
    """Look up one entry; an unknown name is a user error listing the installed ones."""
    table = entries(kind)
    if name not in table:
        known = ", ".join(table) or "none"
        singular = kind.rstrip("s")
        raise UserError(
            f"unknown {singular} '{name}'",
            hint=f"installed: {known}; see `snnctl plugins`",
        )
    return table[name]


def load(kind: str, name: str) -> Any:
    return get(kind, name).load()
