"""What every benchmark script does with its result: record it (--save FILE) and print it (--json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def emit(result: dict[str, Any], save: Path | None, as_json: bool) -> bool:
    """Write `result` to `save` when given and print it as JSON when asked; True if it was printed."""
    if save:
        save.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        json.dump(result, sys.stdout, indent=2)
        print()
    return as_json
