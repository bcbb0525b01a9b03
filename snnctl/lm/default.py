"""The default chat model: trained on first use by the project's own `chat-ssm` recipe, then cached.

It is not shipped: its training data (Schema-Guided Dialogue, in the shared data folder) is prepared
into the cache on first use, and training takes a few minutes on a 2-core CPU (README gives the
measured time), so a fresh machine builds it once into SNNCTL_HOME/cache/chat-ssm, written under a
temporary name and renamed into place when complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from snnctl import ui
from snnctl.artifact import MANIFEST
from snnctl.config import load_recipe
from snnctl.settings import load_settings

RECIPE = "chat-ssm"


def cached_path() -> Path:
    return load_settings().cache / RECIPE


def _outdated(path: Path, recipe: Any) -> bool:
    """A cache left by an older snnctl whose default trained on other data (chatterbot-corpus before
    Schema-Guided Dialogue) or was another model: using it would give the old model silently."""
    try:
        trained = json.loads((path / MANIFEST).read_text()).get("recipe") or {}
    except (OSError, ValueError):
        return True
    return (trained.get("data", {}).get("name") != recipe.data.name
            or trained.get("model", {}).get("name") != recipe.model.name)


def ensure_default(overrides: list[str] | None = None) -> Path:
    """The cached default bundle, training it first (with a progress bar) if it is not there yet."""
    from snnctl.training.progress import train_with_progress

    path = cached_path()
    recipe = load_recipe(RECIPE, overrides)
    if (path / MANIFEST).is_file():
        if not _outdated(path, recipe):
            return path
        ui.err.print(f"The cached chat model in {path} was trained on other data or is another model than "
                     f"the current {RECIPE} recipe: training the current one.")
    ui.err.print(f"No chat model cached yet: training the default one once (recipe {RECIPE} on "
                 f"{recipe.data.name}, {recipe.lm.steps} steps, about 4 minutes on 2 CPU cores) "
                 f"into {path}")
    staging = path.with_name(f".{path.name}.training")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    train_with_progress(recipe, staging, f"train {RECIPE}")
    shutil.rmtree(staging / "checkpoints", ignore_errors=True)
    if path.exists():
        shutil.rmtree(path)
    staging.rename(path)
    return path
