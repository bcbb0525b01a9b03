"""Errors a user can fix. The CLI prints them as one line and exits 2, with no traceback."""


class UserError(Exception):
    """Bad usage or bad input: says what is wrong, where, and what to do."""

    exit_code = 2

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        if self.hint:
            text += f" ({self.hint})"
        return text


class RunFailed(Exception):
    """A failure at run time whose message is already one clear line (exit 1, no traceback to offer)."""

    exit_code = 1
