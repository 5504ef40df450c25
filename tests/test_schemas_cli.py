"""`revloop topics list` (schemas/cli.py): the catalogue as a table on a real-size terminal."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from schemas.cli import topics_app
from schemas.topics import TOPICS


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_topics_list_shows_every_topic_name_whole_however_narrow_the_terminal(
    columns: int,
) -> None:
    result = CliRunner().invoke(topics_app, ["list"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns  # it still fits the terminal
    cells = {cell for line in lines for cell in re.split(r"[\s│┃]+", line) if cell}
    for topic in TOPICS:
        assert topic.name in cells, f"{topic.name} is cut or wrapped in:\n{result.stdout}"
    assert "…" not in result.stdout
