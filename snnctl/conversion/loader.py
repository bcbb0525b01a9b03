"""Loader of the `converted` bundle kind: rebuild the source ANN, rewrite it again, load thresholds."""

from __future__ import annotations

from pathlib import Path

from snnctl.artifact import MANIFEST, Bundle, finish, first_line
from snnctl.contracts import bundle_loader
from snnctl.conversion.convert import build_converted
from snnctl.errors import UserError
from snnctl.manifest import Manifest


@bundle_loader("classify")
def load_converted(path: Path, info: Manifest, map_location: str = "cpu") -> Bundle:
    """The rewrite is deterministic, so the saved weights and per-channel thresholds fit it exactly."""
    try:
        model = build_converted(info.as_dict())
    except (TypeError, ValueError, KeyError, RuntimeError) as err:  # a source config that builds nothing
        raise UserError(f"manifest key 'conversion.source' does not rebuild the source ANN: {first_line(err)}",
                        where=str(path / MANIFEST)) from None
    return finish(path, info, model, map_location)
