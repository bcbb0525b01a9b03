"""The default chat model: trained on first use by the project's own `chat-ssm` recipe, then cached.

It is not shipped: its training data (Schema-Guided Dialogue, in the shared data folder) is prepared
into the cache on first use, and training takes a few minutes on a 2-core CPU (README gives the
measured time), so a fresh machine builds it once into SNNCTL_HOME/cache/chat-ssm, written under a
temporary name and renamed into place when complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from snnctl import ui
from snnctl.artifact import MANIFEST
from snnctl.config import load_recipe
from snnctl.settings import load_settings

RECIPE = "chat-ssm"


def cached_path() -> Path:
    return load_settings().cache / RECIPE


def ensure_default(overrides: list[str] | None = None) -> Path:
    """The cached default bundle, training it first (with a progress bar) if it is not there yet."""
    from snnctl.training.progress import train_with_progress

    path = cached_path()
    if (path / MANIFEST).is_file():
        return path
    recipe = load_recipe(RECIPE, overrides)
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
