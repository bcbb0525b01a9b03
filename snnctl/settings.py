"""Machine-wide settings (pydantic-settings): SNNCTL_* environment variables over an optional snnctl.toml.

A bottom layer: every area may read the settings (the cache folder, the device) without importing recipes.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from snnctl.errors import UserError


def _settings_file() -> Path:
    return Path(os.environ.get("SNNCTL_CONFIG", "snnctl.toml"))


class Settings(BaseSettings):
    """Machine-wide settings: SNNCTL_* environment variables override an optional snnctl.toml."""

    model_config = SettingsConfigDict(env_prefix="SNNCTL_", extra="forbid")

    home: Path = Field(default=Path("~/.snnctl"), description="where snnctl keeps its own files")
    cache_dir: Path | None = Field(default=None, description="downloaded models/datasets; HOME/cache if unset")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'")
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads; torch decides if unset")
    log_level: Literal["debug", "info", "warning", "error"] = "warning"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_settings_file())
        return (init_settings, env_settings, toml)

    @property
    def cache(self) -> Path:
        return (self.cache_dir or self.home / "cache").expanduser()


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        raise UserError(first_problem(err), where=f"settings ({_settings_file()} / SNNCTL_*)") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"not valid TOML: {err}", where=str(_settings_file())) from None


def _key_text(part: object) -> str:
    """A key as the error line shows it: quoted when it holds a space or a control character, so a
    key like 'a\nb' cannot break the one-line error."""
    text = str(part)
    return text if text.isprintable() and " " not in text else repr(text)


def first_problem(err: ValidationError) -> str:
    problem = err.errors()[0]
    loc = ".".join(_key_text(p) for p in problem["loc"]) or "(top level)"
    if problem["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    msg = problem["msg"].removeprefix("Value error, ")
    msg = msg[:1].lower() + msg[1:]
    return msg if not problem["loc"] and problem["type"] == "value_error" else f"{loc}: {msg}"
