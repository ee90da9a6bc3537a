"""Sub-commands of `federation`: one module each (NAME, HELP, configure, run)."""
