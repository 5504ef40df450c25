"""`python -m console`: the console without the rest of the command line."""

import typer

from console.command import console_command

typer.run(console_command)
