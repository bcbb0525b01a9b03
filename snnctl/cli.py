"""The `snnctl` root app. Commands are not hard-wired: each is an entry point in `snnctl.commands`
(a name two packages claim goes to the built-in one, with a warning: `registry.resolve`).

An entry point names either a `typer.Typer` (a command group) or a function (one command). Errors
are turned into exit codes here, once for all commands: 2 with one line for a user error, 1 with one
line for a failure at run time; `--debug` (or SNNCTL_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from snnctl import __version__, registry
from snnctl.errors import RunFailed, UserError

EXAMPLES = """
Examples:

  snnctl train --recipe digits-snn --out runs/digits-snn

  snnctl bench runs/digits-snn --dataset digits --baseline runs/digits-ann

  snnctl convert runs/digits-ann --dataset digits --T 8 --out runs/digits-converted

  snnctl compile runs/digits-loihi-snn --target loihi --dataset digits

  snnctl train --recipe small-ssm --out runs/small-ssm

  snnctl chat

  snnctl recipes list

  snnctl plugins --json
"""

app = typer.Typer(
    name="snnctl",
    help="A command-line toolchain for spiking neural networks.",
    epilog=EXAMPLES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = {"on": os.environ.get("SNNCTL_DEBUG", "") not in ("", "0")}


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"snnctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """A command-line toolchain for spiking neural networks: train, bench and more, one plugin each."""
    if debug:
        _debug["on"] = True


_registered: list[str] = []


def _register_commands() -> None:
    """Add every installed command; one that fails to import is skipped with a warning, not fatal."""
    if _registered:
        return
    for entry in registry.entries("commands").values():
        try:
            obj = entry.load()
        except Exception as err:
            print(
                f"snnctl: warning: command '{entry.name}' from package '{entry.package}' failed to load "
                f"({type(err).__name__}: {err}); skipped",
                file=sys.stderr,
            )
            continue
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=entry.name)
        else:
            app.command(name=entry.name)(obj)
        _registered.append(entry.name)


def debugging() -> bool:
    """Whether this command line asked for tracebacks (--debug or SNNCTL_DEBUG): processes it starts
    (train --nproc) are told the same."""
    return _debug["on"]


def run(argv: list[str]) -> int:
    """Run one command line and return its exit code (0 ok, 1 failure at run time, 2 bad input)."""
    debug = _debug["on"] or "--debug" in argv
    try:
        _register_commands()
        app(args=argv, prog_name="snnctl")
    except SystemExit as done:  # click ends every standalone run this way, usage errors included
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except UserError as err:
        if debug or _debug["on"]:
            traceback.print_exc()
        return _report(2, f"snnctl: error: {err.line()}")
    except KeyboardInterrupt:
        print("snnctl: interrupted", file=sys.stderr)
        return 130
    except RunFailed as err:
        return _report(1, f"snnctl: failed: {err}")
    except Exception as err:
        if debug or _debug["on"]:
            traceback.print_exc()
        return _report(1, f"snnctl: failed: {type(err).__name__}: {err} (run with --debug for the traceback)")
    finally:
        _debug["on"] = os.environ.get("SNNCTL_DEBUG", "") not in ("", "0")
    return 0


def _report(code: int, line: str) -> int:
    """Print the one error line; a process started by `--nproc` leaves it for the launcher instead, which
    prints one line for the whole run (snnctl.training.launch)."""
    from snnctl.training.launch import report_to_launcher

    if not report_to_launcher(code, line):
        print(line, file=sys.stderr)
    return code


def main() -> None:
    sys.exit(run(sys.argv[1:]))
