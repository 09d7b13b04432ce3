"""Where the `mlops` commands print: plain text, never read as markup.

A line's names, paths, reasons and errors come from users, specs and servers. Rich reads
`[...]` in printed text as markup: it would swallow a `[word]` in a run's name or a path,
and an unbalanced `[/x]` raises MarkupError, after the command's work was done. Colour is
given as a style instead (`error`, `styled`), never inside the text.
"""

import typer
from rich.console import Console
from rich.text import Text

err = Console(stderr=True, markup=False)
out = Console(markup=False)


def styled(text: str, style: str, rest: str = "") -> Text:
    """`text` in `style`, then `rest` plain."""
    return Text.assemble((text, style), rest)


def error(message: str) -> Text:
    return styled("error:", "red", f" {message}")


def fail(message: str) -> None:
    """A user's mistake or a platform that is not there: one line, non-zero exit."""
    err.print(error(message), highlight=False, soft_wrap=True)
    raise typer.Exit(1)
