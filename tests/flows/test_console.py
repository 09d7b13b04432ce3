"""The commands' output is plain text: brackets in names, paths and errors print as they are."""

import pytest
import typer

from flows.console import err, fail, out


def test_an_error_with_brackets_prints_them_and_exits_1(capsys):
    """Given an error naming a path with `[bold]` and an unbalanced `[/x]` in it (rich's
    markup would swallow the first and raise MarkupError on the second), the line is whole."""
    with pytest.raises(typer.Exit) as stopped:
        fail("no data at /tmp/[bold]/runs[/x].csv")

    assert stopped.value.exit_code == 1
    assert capsys.readouterr().err.strip() == "error: no data at /tmp/[bold]/runs[/x].csv"


def test_notes_and_lines_print_as_they_are(capsys):
    """Given a flow run named with brackets (as `mlops up` prints the runs it settled)."""
    err.print("flow run [red]odd[/] (1234) was left RUNNING: marked crashed", highlight=False)
    out.print("model [/x] v2", highlight=False)

    printed = capsys.readouterr()
    assert printed.err.strip() == "flow run [red]odd[/] (1234) was left RUNNING: marked crashed"
    assert printed.out.strip() == "model [/x] v2"
