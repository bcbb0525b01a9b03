"""`snnctl chat`'s terminal UI (Textual): conversation, input with history, sampling settings, stats.

Replies are generated in a worker thread and streamed into the conversation piece by piece. Nothing
the user types can crash the app: bad settings, unknown commands and model errors become messages
in the conversation.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Input, Label, Static

from snnctl.errors import UserError
from snnctl.lm.session import ChatSession

HELP = (
    "/reset  forget the conversation (fresh recurrent state)\n"
    "/save FILE  write the conversation, settings and stats as JSON\n"
    "/stats  totals for this conversation\n"
    "/help  this list\n"
    "Sampling settings are on the right: edit a field and press Enter. Up/Down recall earlier inputs."
)
SETTINGS = (("temperature", float), ("top_k", int), ("top_p", float), ("max_tokens", int))


class Message(Static):
    """One entry of the conversation; an assistant's grows as tokens stream in."""

    def __init__(self, role: str, text: str = "") -> None:
        super().__init__(text, markup=False, classes=role)
        self.role = role
        self.text = text

    def append(self, piece: str) -> None:
        self.text += piece
        self.update(self.text)


class HistoryInput(Input):
    """An input box that recalls earlier entries with Up and Down."""

    BINDINGS: ClassVar = [Binding("up", "older", show=False), Binding("down", "newer", show=False)]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history: list[str] = []
        self.cursor = 0

    def remember(self, text: str) -> None:
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self.cursor = len(self.history)

    def action_older(self) -> None:
        if self.history and self.cursor > 0:
            self.cursor -= 1
            self.value = self.history[self.cursor]

    def action_newer(self) -> None:
        if self.cursor < len(self.history) - 1:
            self.cursor += 1
            self.value = self.history[self.cursor]
        else:
            self.cursor = len(self.history)
            self.value = ""


class ChatApp(App[None]):
    TITLE = "snnctl chat"
    CSS = """
    #main { height: 1fr; }
    #conversation { width: 1fr; padding: 0 1; }
    #side { width: 30; padding: 0 1; border-left: solid $primary; }
    Message { margin: 0 0 1 0; }
    Message.user { color: $accent; }
    Message.assistant { color: $text; }
    Message.system { color: $text-muted; text-style: italic; }
    Message.error { color: $error; }
    #side Input { margin: 0 0 1 0; }
    #stats { color: $text-muted; }
    """
    BINDINGS: ClassVar = [Binding("ctrl+q", "quit", "Quit"), Binding("ctrl+r", "reset", "Reset")]

    def __init__(self, session: ChatSession) -> None:
        super().__init__()
        self.session = session
        self.busy = False
        self.pieces_streamed = 0  # text pieces shown one by one (the tests check replies stream)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            yield VerticalScroll(id="conversation")
            with Vertical(id="side"):
                for name, _ in SETTINGS:
                    yield Label(name.replace("_", " "))
                    yield Input(str(getattr(self.session.sampling, name)), id=f"set-{name}")
                yield Static("", id="stats", markup=False)
        yield HistoryInput(placeholder="Message (/help for commands)", id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.say("system", self.session.notice())
        self.query_one("#prompt", Input).focus()

    # -- conversation ----------------------------------------------------------------------------
    def say(self, role: str, text: str = "") -> Message:
        message = Message(role, text)
        pane = self.query_one("#conversation", VerticalScroll)
        pane.mount(message)
        pane.scroll_end(animate=False)
        return message

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "prompt":
            self.submit(event.value)
        elif event.input.id and event.input.id.startswith("set-"):
            self.apply_setting(event.input.id[4:], event.value)

    def submit(self, raw: str) -> None:
        prompt = self.query_one("#prompt", HistoryInput)
        text = raw.strip()
        prompt.remember(text)
        prompt.value = ""
        if not text:
            return
        if self.busy:
            self.say("error", "Still replying; wait for the reply to finish.")
            return
        if text.startswith("/"):
            self.command(text)
            return
        self.say("user", text)
        self.busy = True
        self.generate(text, self.say("assistant"))

    @work(thread=True, exclusive=True)
    def generate(self, text: str, target: Message) -> None:
        try:
            for piece in self.session.reply(text):
                self.call_from_thread(self._stream, target, piece)
        except UserError as err:
            self.call_from_thread(self.say, "error", err.line())
        except Exception as err:  # the TUI never crashes on input; the error is shown instead
            self.call_from_thread(self.say, "error", f"generation failed: {type(err).__name__}: {err}")
        finally:
            self.call_from_thread(self._done)

    def _stream(self, target: Message, piece: str) -> None:
        target.append(piece)
        self.pieces_streamed += 1
        self.query_one("#conversation", VerticalScroll).scroll_end(animate=False)

    def _done(self) -> None:
        self.busy = False
        stats = self.session.last_stats
        if stats is not None:
            line = f"{stats.tokens} tokens, {stats.tokens_per_s:.0f} tok/s"
            if stats.spikes_per_token is not None:
                line += f", {stats.spikes_per_token:.0f} spikes/token, firing {stats.firing_rate:.1%}"
            line += f", ~{stats.energy_nj_per_token.get('compute_nj', 0):.0f} nJ/token (est.)"
            self.query_one("#stats", Static).update(line)
            self.say("system", line)

    # -- commands and settings -------------------------------------------------------------------
    def command(self, text: str) -> None:
        name, _, arg = text.partition(" ")
        arg = arg.strip()
        try:
            if name == "/help":
                self.say("system", HELP)
            elif name == "/reset":
                self.action_reset()
            elif name == "/stats":
                totals = self.session.totals()
                self.say("system", ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in totals.items()))
            elif name == "/save":
                if not arg:
                    raise UserError("/save needs a file name", hint="e.g. /save chat.json")
                self.say("system", f"saved to {self.session.save(Path(arg))}")
            else:
                raise UserError(f"unknown command {name}", hint="/help lists them")
        except UserError as err:
            self.say("error", err.line())

    def action_reset(self) -> None:
        if self.busy:
            self.say("error", "Still replying; reset after the reply.")
            return
        self.session.reset()
        self.query_one("#conversation", VerticalScroll).remove_children()
        self.say("system", "Conversation reset: the model's state is fresh.")

    def apply_setting(self, name: str, value: str) -> None:
        kind = dict(SETTINGS)[name]
        try:
            parsed = kind(value)
            candidate = replace(self.session.sampling, **{name: parsed}).check()
        except ValueError:
            self.say("error", f"{name}: '{value}' is not a {kind.__name__}")
            return
        except UserError as err:
            self.say("error", err.line())
            return
        self.session.sampling = candidate
        self.say("system", f"{name} = {parsed}")
