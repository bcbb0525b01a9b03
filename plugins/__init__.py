"""The built-in subcommands: one thin module each, found through `snnctl.commands` entry points."""
