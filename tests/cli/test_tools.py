"""`flowc tools`: every registered tool with its parameters, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowc.cli.main import main


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
            }
        ],
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
    }


def test_no_tools_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools"]) == 0
    assert capsys.readouterr() == ("", "flowc: no tools are registered\n")


def test_no_tools_as_json_is_an_empty_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tools", "--json"]) == 0
    assert capsys.readouterr() == ("[]\n", "")
