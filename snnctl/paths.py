"""Checks on an output folder, made before any work so a bad --out costs nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from snnctl.errors import UserError


def check_out(out: Path, *, source: Path | None = None, flag: str = "--out") -> Path:
    """Refuse an output folder that names a file, lies under a file, cannot be written, or is the input
    bundle itself; an existing folder is fine (a bundle is rewritten in place)."""
    out = Path(out)
    if source is not None and out.resolve() == Path(source).resolve():
        raise UserError(f"{flag} is the input bundle", where=str(out), hint="write the result to a new folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} names an existing file, not a folder", where=str(out),
                        hint="give a folder path (the bundle is a folder)")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} lies under a file", where=str(existing), hint="give a folder path outside that file")
    try:  # a real probe: permission bits say nothing for root or a read-only mount
        Path(tempfile.mkdtemp(prefix=".snnctl-probe-", dir=existing)).rmdir()
    except OSError as err:
        raise UserError(f"{flag} is not writable ({err.strerror or err})", where=str(existing),
                        hint="choose a folder you can write to") from None
    return out
