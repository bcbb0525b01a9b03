"""The bundle manifest (`snnctl.json`), typed: one definition, one migration, one way to read it.

Every field is checked when a manifest is read, so a tampered or foreign file is one user error
naming the file and the key path, never a Python error deep inside a loader. Kind-specific
sections (`conversion`, `lm`) are typed where a loader relies on them; sections only recorded for
people (`chat`, `robust`, `nir_import`, ...) stay free-form, and unknown top-level keys are kept, so
a plugin's bundle kind can carry its own section.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, field_validator

from snnctl import __version__, registry
from snnctl.data.encoders import ENCODINGS
from snnctl.errors import UserError

FORMAT = "snnctl-bundle"
FORMAT_VERSION = 2
LOGIC_GATED = "logic-gated"  # the loader kind of ternary classifiers (kind snn or ann, logic_gated)
SEED_BOUND = 2**63  # torch seeds are 64-bit
SECTIONS = ("conversion", "lm", "chat", "robust")  # kind-specific: written only when present

JSONDict = dict[StrictStr, Any]


class Section(BaseModel):
    """A typed sub-object: its fields are checked, extra keys are kept as written."""

    model_config = ConfigDict(extra="allow", strict=True)


class Zoo(Section):
    name: Annotated[StrictStr, Field(min_length=1)]
    config: JSONDict = Field(default_factory=dict)
    activation: JSONDict | None = None


class Neuron(Section):
    """The neuron parameters: `type` names a registered neuron; its own keys are checked when it is built."""

    type: StrictStr = "lif"


class ZooSource(Section):
    """A converted model's source ANN from the zoo."""

    type: Literal["zoo"]
    name: Annotated[StrictStr, Field(min_length=1)]
    config: JSONDict = Field(default_factory=dict)
    activation: JSONDict | None = None


class HFSource(Section):
    """A converted model's source ANN from a Hugging Face config (structure only)."""

    type: Literal["hf"]
    config: JSONDict


class RecordedData(Section):
    """A recipe's [data] table as recorded: commands read it back to measure on the same split."""

    name: Annotated[StrictStr, Field(min_length=1)]
    test_fraction: Annotated[float, Field(gt=0, lt=1)] | None = None
    split_seed: Annotated[StrictInt, Field(ge=0, lt=SEED_BOUND)] | None = None
    options: JSONDict = Field(default_factory=dict)


class RecordedRecipe(Section):
    """The resolved recipe the bundle was trained with; its tables are checked in full where a command
    trains from it again (`snnctl.config.validate_recipe`), its [data] table here."""

    data: RecordedData | None = None


class Conversion(Section):
    """How a converted SNN is rebuilt: its source ANN, rewritten again deterministically."""

    source: Annotated[ZooSource | HFSource, Field(discriminator="type")]
    readout_delay: Annotated[StrictInt, Field(ge=0)] = 0
    graded_levels: Annotated[StrictInt, Field(ge=1)] | None = None
    hybrid: StrictBool = False
    data: RecordedData | None = None


class LanguageModel(Section):
    """A language model's twin: spiking (`spiking-ssm`'s SNN) or its ANN."""

    spiking: StrictBool

    @property
    def twin(self) -> str:
        return "snn" if self.spiking else "ann"


class Manifest(Section):
    """Version 2 of the manifest: what the weights next to it are and how they were made."""

    format: Literal["snnctl-bundle"] = FORMAT
    format_version: Literal[2] = FORMAT_VERSION
    kind: Annotated[StrictStr, Field(min_length=1)]
    code_version: StrictStr = __version__
    created: StrictStr | None = None
    zoo: Zoo
    neuron: Neuron | None = None
    T: Annotated[StrictInt, Field(ge=1)] | None = None
    encoding: StrictStr | None = None
    tokenizer: StrictStr | None = None
    parent: StrictStr | None = None
    recipe: RecordedRecipe | None = None
    seed: Annotated[StrictInt, Field(gt=-SEED_BOUND, lt=SEED_BOUND)] | None = None
    metrics: JSONDict = Field(default_factory=dict)
    logic_gated: StrictBool = False
    conversion: Conversion | None = None
    lm: LanguageModel | None = None
    chat: JSONDict | None = None
    robust: JSONDict | None = None
    distilled: JSONDict | None = None  # the teacher and logits a distilled student learnt from

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is not None and value not in ENCODINGS:
            raise ValueError(f"unknown encoding '{value}' (known: {', '.join(ENCODINGS)})")
        return value

    @field_validator("tokenizer")
    @classmethod
    def _plain_file_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "\\" in value or value in (".", "..")):
            raise ValueError("must be a file name inside the bundle")
        return value

    @property
    def loader(self) -> str:
        """The registered bundle kind that builds this model: the kind, or logic-gated for ternary ones."""
        return LOGIC_GATED if self.logic_gated else self.kind

    def as_dict(self) -> dict[str, Any]:
        """The JSON view that `snnctl.json` holds and `Bundle.manifest` gives to readers."""
        data = self.model_dump(mode="json")
        if data["zoo"].get("activation") is None:  # written only when the ANN is not plain ReLU
            del data["zoo"]["activation"]
        return {k: v for k, v in data.items() if not (k in SECTIONS and v is None)}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2) + "\n"


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2. A v1 language model said `"task": "lm"` with kind ann/snn; v2 says kind `lm`
    and keeps the twin under `lm.spiking`. A version-2 manifest is left as it is."""
    data = dict(data)
    if data.get("format_version") != 1:
        return data
    data["format_version"] = FORMAT_VERSION
    if "task" in data:
        task = data.pop("task")
        if task == "lm":
            data["lm"] = {"spiking": data.get("kind") != "ann"}
            data["kind"] = "lm"
        elif task not in (None, "classify"):
            raise ValueError(f"unknown task {task!r}")
    return data


def key_path(loc: tuple[Any, ...], data: Any) -> str:
    """`a.b[0].c` for a pydantic error location, leaving out the tags pydantic adds for a tagged
    union (a source's `"type": "zoo"`), which are no key of the file."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        parts.append(f"[{part}]" if isinstance(part, int) else ("." if parts else "") + str(part))
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
    return "".join(parts) or "(top level)"


def parse(data: Any, where: str) -> Manifest:
    """Validate a manifest read from `where` (migrating version 1); one UserError on any fault."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"manifest is not an {FORMAT} manifest", where=where)
    version = data.get("format_version")
    if version not in (1, FORMAT_VERSION) or isinstance(version, bool):
        raise UserError(
            f"manifest format version {version!r} is not supported (this snnctl reads 1 and {FORMAT_VERSION})",
            where=where,
            hint="upgrade snnctl" if isinstance(version, int) and version > FORMAT_VERSION else None,
        )
    for key in ("zoo", "kind"):
        if key not in data:
            raise UserError(f"manifest lacks '{key}'", where=where)
    try:
        manifest = Manifest.model_validate(migrate(data))
    except ValueError as err:  # pydantic's ValidationError is a ValueError too
        raise UserError(describe(err, data), where=where) from None
    installed = [k for k in registry.entries("bundles") if k != LOGIC_GATED]
    if manifest.kind not in installed:
        raise UserError(f"manifest key 'kind': unknown bundle kind '{manifest.kind}'", where=where,
                        hint=f"installed: {', '.join(installed) or 'none'}")
    if manifest.logic_gated and manifest.kind not in ("snn", "ann"):
        raise UserError(f"manifest key 'logic_gated': a logic-gated bundle is a classifier SNN or ANN, not "
                        f"'{manifest.kind}'", where=where)
    return manifest


def describe(err: ValueError, data: Any) -> str:
    if not isinstance(err, ValidationError):
        return f"manifest is invalid: {err}"
    first = err.errors(include_url=False)[0]
    msg = first["msg"].removeprefix("Value error, ")
    return f"manifest key '{key_path(tuple(first['loc']), migrate(data))}': {msg}"


def build(
    *,
    zoo_name: str,
    zoo_config: dict[str, Any],
    kind: str,
    neuron: dict[str, Any] | None = None,
    T: int | None = None,
    encoding: str | None = None,
    tokenizer: str | None = None,
    parent: str | None = None,
    recipe: dict[str, Any] | None = None,
    seed: int | None = None,
    metrics: dict[str, Any] | None = None,
    logic_gated: bool = False,
    activation: dict[str, Any] | None = None,
    distilled: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new manifest's dict (writers add kind-specific sections, then `save_bundle` validates it).
    An ANN records no neuron, T or encoding, whatever it is given."""
    if kind not in registry.entries("bundles"):
        raise ValueError(f"kind must be one of {tuple(registry.entries('bundles'))}, got {kind!r}")
    spiking = kind != "ann"
    zoo: dict[str, Any] = {"name": zoo_name, "config": zoo_config}
    if activation:
        zoo["activation"] = activation
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "code_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "zoo": zoo,
        "kind": kind,
        "neuron": neuron if spiking else None,
        "T": T if spiking else None,
        "encoding": encoding if spiking else None,
        "tokenizer": tokenizer,
        "parent": parent,
        "recipe": recipe,
        "seed": seed,
        "metrics": metrics or {},
        "logic_gated": logic_gated,
        **({"distilled": distilled} if distilled else {}),
    }
