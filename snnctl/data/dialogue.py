"""Dialogues for `snnctl data prepare --format dialogue`: one JSON object a line, as Schema-Guided
Dialogue ships them (`{dialogue_id, services, turns: [{speaker: USER|SYSTEM, utterance}]}`).

Each example is one dialogue: `id` (string), `turns` (strings, the user's first, then alternating
user/assistant) and `services` (strings, empty when the record has none). SGD's USER is the user and
SYSTEM the assistant; a run of turns by one speaker is merged into one turn, and a dialogue the
system opens gets an empty first user turn, so a turn's speaker is always its position's parity.
A turn may also be a plain string (then speakers alternate by position, the user's first).

Detection: a `.jsonl`/`.json` source is `dialogue` when its first record has a `turns` list, else it
stays `jsonl` (a table); `--format dialogue` always reads it as dialogues. The held-out split is the
seeded random split by row of `snnctl data prepare`, so whole dialogues are held out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from snnctl.data.formats import Options, Read, from_examples, split_of
from snnctl.errors import UserError

SUFFIXES = (".jsonl", ".json")
ROLES = {"user": "user", "system": "assistant", "assistant": "assistant"}  # speaker (any case) -> role


def has_turns(path: Path) -> bool:
    """Whether the first record of a JSON-lines file (or of the first one in a folder) has a `turns` list."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        return bool(found) and has_turns(found[0])
    try:
        with path.open(encoding="utf-8") as fh:
            line = next((ln for ln in fh if ln.strip()), "")
        record = json.loads(line) if line else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and isinstance(record.get("turns"), list)


def turns_of(record: Any, where: str) -> tuple[list[str], int, bool]:
    """The record's turns as alternating user/assistant text (the user's first), how many turns were
    merged into the one before (same speaker twice in a row), and whether the assistant opened."""
    raw = record.get("turns") if isinstance(record, dict) else None
    if not isinstance(raw, list) or not raw:
        raise UserError("record has no turns (expected a non-empty 'turns' list)", where=where,
                        hint='one dialogue a line: {"turns": [{"speaker": "USER", "utterance": "..."}, ...]}')
    out: list[str] = []
    last, merged, opened = None, 0, False
    for i, turn in enumerate(raw, 1):
        if isinstance(turn, str):
            role, text = ("user", "assistant")[(i - 1) % 2], turn
        elif isinstance(turn, dict) and isinstance(turn.get("utterance"), str):
            role, text = ROLES.get(str(turn.get("speaker", "")).lower(), ""), turn["utterance"]
            if not role:
                raise UserError(f"turn {i} has speaker {turn.get('speaker')!r}, expected USER or SYSTEM", where=where)
        else:
            raise UserError(f"turn {i} is neither a string nor a {{speaker, utterance}} object", where=where)
        if role == last:
            out[-1] = f"{out[-1]} {text.strip()}".strip()
            merged += 1
            continue
        if not out and role == "assistant":
            out.append("")
            opened = True
        out.append(text.strip())
        last = role
    return out, merged, opened


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line; a line that is not JSON names its line."""
    if path.stat().st_size == 0:
        raise UserError("empty file, expected one JSON dialogue a line", where=str(path))
    with path.open(encoding="utf-8") as fh:
        try:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as err:
                    raise UserError(f"line {n} is not JSON ({err.msg})", where=f"{path}:{n}") from None
        except UnicodeDecodeError:
            raise UserError("not UTF-8 text", where=str(path)) from None


def _examples(paths: list[Path], stats: dict[str, int]) -> Iterator[dict[str, Any]]:
    for path in paths:
        before = stats["dialogues"]
        for n, record in _records(path):
            turns, merged, opened = turns_of(record, f"{path}:{n}")
            services = record.get("services")
            ident = record.get("dialogue_id", record.get("id", f"{path.name}:{n}"))
            stats["dialogues"] += 1
            stats["turns"] += len(turns) - opened
            stats["merged_turns"] += merged
            stats["opened_by_assistant"] += opened
            yield {"id": str(ident), "turns": turns,
                   "services": [str(s) for s in services] if isinstance(services, list) else []}
        if stats["dialogues"] == before:
            raise UserError("no dialogues (only blank lines)", where=str(path))


def _files(source: Path) -> dict[str, list[Path]]:
    """One file (split later), or a folder of JSON-lines files whose names may say train/test."""
    if source.is_file():
        return {"all": [source]}
    found = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not found:
        raise UserError("no .jsonl dialogue files", where=str(source))
    out: dict[str, list[Path]] = {}
    for p in found:
        out.setdefault(split_of(p.name) or "all", []).append(p)
    return out


def read_dialogue(source: Path, opts: Options) -> Read:
    """Dialogues streamed into Arrow, one example each; the manifest's info counts turns and merges."""
    import datasets

    features = datasets.Features({"id": datasets.Value("string"), "turns": datasets.Sequence(datasets.Value("string")),
                                  "services": datasets.Sequence(datasets.Value("string"))})
    files = _files(source)
    stats = dict.fromkeys(("dialogues", "turns", "merged_turns", "opened_by_assistant"), 0)
    splits = {split: from_examples(lambda paths=paths: _examples(paths, stats), features, opts)
              for split, paths in files.items()}
    info = {**stats, "roles": {"USER": "user", "SYSTEM": "assistant"},
            "turns_order": "user first, then alternating user/assistant"}
    return Read(splits, [p for paths in files.values() for p in paths], [], "dialogue", info)
