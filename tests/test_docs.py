"""Docs that quote the code stay true."""

from __future__ import annotations

from schemas.topics import catalogue_markdown
from tests import ROOT


def test_the_architecture_doc_shows_the_current_topic_catalogue() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    embedded = text.split("<!-- catalogue:begin", 1)[1].split("-->", 1)[1]
    embedded = embedded.split("<!-- catalogue:end -->", 1)[0].lstrip("\n")
    assert embedded == catalogue_markdown(), "run `revloop topics list --markdown` and paste it"
