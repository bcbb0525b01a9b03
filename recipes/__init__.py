"""Built-in TOML recipes, registered as the `builtin` entry of the `snnctl.recipes` group."""
