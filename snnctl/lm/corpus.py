"""Text corpora for language models, registered as datasets like the classification ones.

- `tinyshakespeare`: ../shared/data/tinyshakespeare/input.txt; the last `test_fraction` of the text
  (a tenth in the recipes) is held out, contiguous, so no validation line is seen in training.
- `chatterbot`: the English dialogues of the PyPI package chatterbot-corpus, rendered with the chat
  template; whole conversations are held out.
- `sgd`: Schema-Guided Dialogue (../shared/data/dialogue/sgd_dev_17files.jsonl, task-oriented:
  restaurants, travel, events...), prepared once into the cache by `snnctl data prepare --format
  dialogue`, rendered with the chat template; whole dialogues are held out.
- `textfile`: any UTF-8 file given as `[data.options] path`.

A folder written by `snnctl data prepare` works as `data.name` too (`prepared_corpus`): dialogues are
rendered with the chat template, plain text is its lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from snnctl.data import find_shared
from snnctl.errors import UserError
from snnctl.lm.tokenizer import ASSISTANT, END, USER


@dataclass(frozen=True)
class TextCorpus:
    """Raw training and held-out text; `chat` is the template the text was rendered with, if any."""

    name: str
    train: str
    val: str
    chat: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


# How a dialogue is written out for training and for `snnctl chat`: each turn on its own line,
# introduced by its speaker's special token; the assistant's turn ends at the next user token.
CHAT_TEMPLATE: dict[str, Any] = {
    "user": USER + " ",
    "assistant": ASSISTANT + " ",
    "turn_end": "\n",
    "stop": [USER, END],
}


def render_dialogue(turns: list[str], template: dict[str, Any] = CHAT_TEMPLATE) -> str:
    speakers = (template["user"], template["assistant"])
    lines = [speakers[i % 2] + turn.strip() + template["turn_end"] for i, turn in enumerate(turns)]
    return "".join(lines) + END + "\n"


def _split_text(text: str, test_fraction: float) -> tuple[str, str]:
    cut = int(len(text) * (1 - test_fraction))
    return text[:cut], text[cut:]


def load_tinyshakespeare(test_fraction: float = 0.1, split_seed: int = 0, path: str | None = None) -> TextCorpus:
    """Contiguous split: training text first, the held-out tail last (split_seed does not apply)."""
    folder = find_shared("tinyshakespeare", ("input.txt",), path)
    train, val = _split_text((folder / "input.txt").read_text(encoding="utf-8"), test_fraction)
    return TextCorpus("tinyshakespeare", train, val, info={"source": str(folder / "input.txt")})


def load_textfile(test_fraction: float = 0.1, split_seed: int = 0, path: str | None = None) -> TextCorpus:
    if not path:
        raise UserError("dataset 'textfile' needs a file", where="[data.options] path",
                        hint="set data.options.path to a UTF-8 text file")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read text: {err}", where=path) from None
    if len(text) < 1000:
        raise UserError(f"only {len(text)} characters of text; a language model needs more", where=path)
    train, val = _split_text(text, test_fraction)
    return TextCorpus("textfile", train, val, info={"source": str(Path(path).resolve())})


def dialogues(language: str = "english") -> list[list[str]]:
    """Every conversation in chatterbot-corpus for `language`, in file order; turns as strings."""
    import yaml

    try:
        root = files("chatterbot_corpus") / "data" / language
    except ModuleNotFoundError:
        raise UserError("the chatterbot-corpus package is not installed",
                        hint="pip install chatterbot-corpus (make setup installs it)") from None
    found: list[list[str]] = []
    for item in sorted(root.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".yml"):
            continue
        data = yaml.safe_load(item.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations") or []:
            turns = [str(t) for t in conv if isinstance(t, str | int | float) and str(t).strip()]
            if len(turns) >= 2:
                found.append(turns)
    if not found:
        raise UserError(f"chatterbot-corpus has no '{language}' dialogues", hint="try language = 'english'")
    return found


def load_chatterbot(test_fraction: float = 0.1, split_seed: int = 0, language: str = "english",
                    repeat: int = 1) -> TextCorpus:
    """Conversations shuffled by `split_seed`; the last `test_fraction` of them held out. `repeat`
    writes the training conversations that many times, each time in a new order."""
    convs = dialogues(language)
    rng = random.Random(split_seed)
    rng.shuffle(convs)
    n_val = max(1, int(len(convs) * test_fraction))
    train_convs, val_convs = convs[:-n_val], convs[-n_val:]
    parts: list[str] = []
    for _ in range(repeat):
        rng.shuffle(train_convs)
        parts += [render_dialogue(c) for c in train_convs]
    val = "".join(render_dialogue(c) for c in val_convs)
    return TextCorpus("chatterbot", "".join(parts), val, chat=dict(CHAT_TEMPLATE),
                      info={"conversations_train": len(train_convs), "conversations_val": len(val_convs)})


def prepared_corpus(folder: Path) -> TextCorpus:
    """A `snnctl data prepare` folder as language-model text, with the split fixed when it was prepared:
    dialogues rendered with the chat template (so the bundle chats in dialogue mode), text as its lines
    (labels, if any, are not used)."""
    import datasets

    from snnctl.data.prepared import open_prepared

    manifest = open_prepared(folder)
    kind = manifest["modality"]
    if kind not in ("dialogue", "text"):
        raise UserError(f"prepared dataset holds {kind} data, not text or dialogues", where=str(folder),
                        hint="a language-model recipe needs a dataset prepared from text or dialogues")
    dd = datasets.load_from_disk(str(folder / "hf"))
    info: dict[str, Any] = {"prepared": str(folder), "fingerprint": manifest["fingerprint"]}
    if kind == "text":
        train, val = ("".join(line + "\n" for line in dd[split]["text"]) for split in ("train", "test"))
        return TextCorpus(manifest["name"], train, val, info=info)
    train, val = ("".join(render_dialogue(turns) for turns in dd[split]["turns"]) for split in ("train", "test"))
    info.update(dialogues_train=len(dd["train"]), dialogues_val=len(dd["test"]))
    return TextCorpus(manifest["name"], train, val, chat=dict(CHAT_TEMPLATE), info=info)


SGD_FILE = "sgd_dev_17files.jsonl"


def load_sgd(test_fraction: float = 0.1, split_seed: int = 0, path: str | None = None) -> TextCorpus:
    """The shared Schema-Guided Dialogue file, prepared once per split (a cache folder per fraction and
    seed, so two recipes never undo each other's split) and rendered with the chat template."""
    from snnctl.data.builtin import cached

    source = find_shared("dialogue", (SGD_FILE,), path) / SGD_FILE
    folder = cached(f"sgd-test{test_fraction:g}-seed{split_seed}", source, "dialogue", test_fraction=test_fraction,
                    seed=split_seed)
    corpus = prepared_corpus(folder)
    return replace(corpus, name="sgd", info={**corpus.info, "source": str(source)})
