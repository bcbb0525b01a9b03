"""Entry-point registries: everything pluggable, the built-ins included, is found here.

A third-party package adds a command, model, neuron, dataset, compile target, recipe folder or bundle
kind by declaring an entry point in one of the groups below; nothing else is needed. What the object
behind each entry point must look like is in `snnctl.contracts`. A name claimed by two packages is a
clash: the built-in one wins (else the first installed), and the user is told on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
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
    "bundles": "snnctl.bundles",
    "tasks": "snnctl.tasks",
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


BUILTIN = "snnctl"


@dataclass(frozen=True)
class Clash:
    """Two or more packages claim one name: `used` is the one that wins, `ignored` the others."""

    kind: str
    name: str
    used: Entry
    ignored: tuple[Entry, ...]

    def line(self) -> str:
        others = ", ".join(e.package for e in self.ignored)
        return (f"{self.kind.rstrip('s')} '{self.name}' is provided by {self.used.package} and {others}; "
                f"using {self.used.package}'s")


_clashes: dict[tuple[str, str], Clash] = {}


def resolve(kind: str, claims: Iterable[Entry]) -> dict[str, Entry]:
    """One entry per name, in the order of first claims: the built-in package's when it claims the name,
    else the first claim (install order). Every clash is recorded for `snnctl plugins` and warned about
    on stderr once."""
    by_name: dict[str, list[Entry]] = {}
    for entry in claims:
        rivals = by_name.setdefault(entry.name, [])
        if all((e.package, e.value) != (entry.package, entry.value) for e in rivals):
            rivals.append(entry)  # the same package found twice on the path is no clash
    chosen: dict[str, Entry] = {}
    for name, rivals in by_name.items():
        used = next((e for e in rivals if e.package == BUILTIN), rivals[0])
        chosen[name] = used
        if len(rivals) > 1 and (kind, name) not in _clashes:
            clash = Clash(kind, name, used, tuple(e for e in rivals if e is not used))
            _clashes[kind, name] = clash
            print(f"snnctl: warning: {clash.line()} (see `snnctl plugins`)", file=sys.stderr)
    return chosen


def clashes() -> list[Clash]:
    """The clashes found so far, entry points of every group included (looked up here first)."""
    for kind in GROUPS:
        entries(kind)
    return list(_clashes.values())


@cache
def entries(kind: str) -> dict[str, Entry]:
    """All entries of one kind, by name; a name claimed twice goes to the built-in (see `resolve`)."""
    claims = (Entry(kind, ep.name, ep.value, _package_of(ep)) for ep in entry_points(group=GROUPS[kind]))
    return dict(sorted(resolve(kind, claims).items()))


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
