"""How a conversation becomes the text a language model reads: one rule for `chat` and `serve`.

A dialogue model (trained with a chat template) reads each user turn as `user + text + turn_end` and
each assistant turn as `assistant + text + turn_end`; a prompt ends with the assistant marker, so the
model's next tokens are the reply. A system message has no marker in the template (the models were
not trained with one): it is written as plain text on its own line before the dialogue. A plain-text
model reads the messages' contents one after the other and continues them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenizers import Tokenizer

from snnctl.lm.tokenizer import END, SPECIALS

ROLES = ("system", "user", "assistant")


def plain(text: str) -> str:
    """A message's text without the special markers (`<|user|>`, ...): typed into a message they would
    be read as a turn boundary, letting a client put words in the other speaker's mouth."""
    for marker in SPECIALS:
        text = text.replace(marker, "")
    return text


def user_turn(text: str, template: dict[str, Any]) -> str:
    """One user message, opening the assistant's reply."""
    return f"{template['user']}{plain(text).strip()}{template['turn_end']}{template['assistant']}"


def render(messages: Sequence[tuple[str, str]], template: dict[str, Any] | None) -> str:
    """(role, content) pairs as the model's text, ready for the reply. An assistant turn is written
    exactly as sent (not stripped): a reply the server produced and the client sent back then reads
    as the very tokens the model generated, so a kept session's state matches the history."""
    if template is None:
        return "".join(plain(content) for _, content in messages)
    parts: list[str] = []
    for i, (role, text) in enumerate(messages):
        content = plain(text)
        if role == "system":
            parts.append(content.strip() + "\n")
        elif role == "user":
            opens_reply = i == len(messages) - 1
            parts.append(user_turn(content, template) if opens_reply
                         else f"{template['user']}{content.strip()}{template['turn_end']}")
        else:
            parts.append(f"{template['assistant']}{content}{template['turn_end']}")
    return "".join(parts)


def dialogue_template(chat: dict[str, Any]) -> dict[str, Any] | None:
    """The bundle's chat template if the model was trained on dialogue with one, else None."""
    template = chat.get("template")
    return template if chat.get("mode") == "dialogue" and template else None


def stop_ids(tok: Tokenizer, template: dict[str, Any] | None) -> tuple[int, ...]:
    """Token ids that end a reply: the template's stops (the next turn's marker), else end of text."""
    stops = template["stop"] if template else [END]
    return tuple(i for i in (tok.token_to_id(s) for s in stops) if i is not None)
