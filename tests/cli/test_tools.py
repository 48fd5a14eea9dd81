"""`flowc tools`: every registered tool with its parameters, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowc.cli.main import main
from tests.cli.conftest import WriteFile


def test_tools_lists_names_summaries_and_parameters(
    tools_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "--tools", str(tools_path)]) == 0
    assert capsys.readouterr() == (
        "analyze: Parse the code.\n"
        "    from review_tools.analyze (review_tools.py:6)\n"
        "notify\n"
        "    from review_tools.notify (review_tools.py:27)\n"
        "    channel: str (keyword_only, required)\n"
        "    **options (var_keyword)\n"
        "refine: Fix what the score complained about.\n"
        "    from review_tools.refine_code (review_tools.py:21)\n"
        "    max_fixes: int (positional_or_keyword, default 10)\n"
        "score: Score the code.\n"
        "    from review_tools.score (review_tools.py:15)\n",
        "",
    )


def test_tools_outside_the_current_folder_show_their_whole_path(
    tools_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["tools", "--tools", str(tools_path)]) == 0
    assert f"    from review_tools.score ({tools_path}:15)\n" in capsys.readouterr().out


def test_tools_json(tools_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "--json", "--tools", str(tools_path)]) == 0
    tools = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in tools] == ["analyze", "notify", "refine", "score"]
    assert tools[2] == {
        "name": "refine",
        "summary": "Fix what the score complained about.",
        "params": [
            {
                "name": "max_fixes",
                "kind": "positional_or_keyword",
                "required": False,
                "default": "10",
                "annotation": "int",
                "type": "int",
            }
        ],
        "reads": None,
        "writes": None,
        "is_async": False,
        "blocking": False,
        "origin": "review_tools.refine_code",
        "location": f"{tools_path}:21",
    }
    assert tools[1]["params"][0] == {
        "name": "channel",
        "kind": "keyword_only",
        "required": True,
        "default": None,
        "annotation": "str",
        "type": "str",
    }


def test_no_tools_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools"]) == 0
    assert capsys.readouterr() == ("", "flowc: no tools are registered\n")


def test_no_tools_as_json_is_an_empty_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "--json"]) == 0
    assert capsys.readouterr() == ("[]\n", "")


TYPED_TOOLS = '''\
from __future__ import annotations

from typing import Literal

from typing_extensions import NotRequired, TypedDict

from flowc.runtime import register_tool


class Page(TypedDict):
    url: str
    tries: NotRequired[int]


class Fetched(TypedDict):
    status: int
    body: str | None
    errors: NotRequired[list[dict[str, str]]]


@register_tool
def fetch(
    state: Page, *, mode: Literal["fast", "safe"] = "fast", limit: int | None = None
) -> Fetched:
    """Fetch a page."""
    return {"status": 200, "body": None}


@register_tool
def log(state: Page) -> None:
    """Log the page."""
'''


def test_tools_show_what_a_typed_tool_reads_and_writes(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_file("typed_tools.py", TYPED_TOOLS)
    assert main(["tools", "--tools", str(path)]) == 0
    assert capsys.readouterr() == (
        "fetch: Fetch a page.\n"
        "    from typed_tools.fetch (typed_tools.py:21)\n"
        "    reads: url: str, tries?: int\n"
        "    writes: status: int, body: str?, errors?: list[dict[str]]\n"
        '    mode: str (one of "fast", "safe") (keyword_only, default \'fast\')\n'
        "    limit: int? (keyword_only, default None)\n"
        "log: Log the page.\n"
        "    from typed_tools.log (typed_tools.py:29)\n"
        "    reads: url: str, tries?: int\n"
        "    writes: nothing\n",
        "",
    )


def test_tools_json_has_reads_writes_and_types(
    write_file: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_file("typed_tools.py", TYPED_TOOLS)
    assert main(["tools", "--json", "--tools", str(path)]) == 0
    fetch, log = json.loads(capsys.readouterr().out)
    assert fetch["reads"] == [
        {"name": "url", "type": "str", "required": True},
        {"name": "tries", "type": "int", "required": False},
    ]
    assert fetch["writes"] == [
        {"name": "status", "type": "int", "required": True},
        {"name": "body", "type": "str?", "required": True},
        {"name": "errors", "type": "list[dict[str]]", "required": False},
    ]
    assert [p["type"] for p in fetch["params"]] == ['str (one of "fast", "safe")', "int?"]
    assert log["writes"] == []
