"""The wheel as users get it: one `flowc` namespace, every file shipped, and it works installed.

Built from this checkout, installed into a new virtual environment in a temporary folder,
and run from yet another folder: `flowc --help`, `check`, `run` on a shipped example, and
`serve` until a flow is created and run over HTTP with a tool module from that folder.
"""

from __future__ import annotations

import re
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.packaging.conftest import ROOT, Server, clean_environment, free_port, run

#: The folders the wheel maps into `flowc/`: every file in them ships.
PACKAGE_FOLDERS = ("cli", "dsl", "compiler", "runtime", "server", "grammars")

#: The installing process may take a while on a cold cache.
pytestmark = pytest.mark.timeout(600)

TOOLS_MODULE = '''\
"""A user's tools, beside the flow."""

from flowc.runtime import register_tool


@register_tool
def shout(state, *, times: int = 1):
    """Repeat the message, louder."""
    return {"message": state["message"].upper() * times}
'''

FLOW = "node loud = shout(times = 2)\n\nanalyze -> loud -> end\n"


def shipped_sources() -> set[str]:
    """What the wheel must hold: every file of the package folders, under `flowc/`."""
    files = {"flowc/__init__.py", "flowc/py.typed"}
    for folder in PACKAGE_FOLDERS:
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.add(f"flowc/{path.relative_to(ROOT).as_posix()}")
    return files


def test_the_wheel_holds_flowc_alone_with_every_file_of_its_folders(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {name.split("/")[0] for name in names} == {"flowc", "flowc-0.1.0.dist-info"}
    packaged = {name for name in names if name.startswith("flowc/")}
    assert packaged == shipped_sources()
    assert "flowc/grammars/flow.lark" in packaged
    assert "flowc/server/routes/graphs.py" in packaged  # the folder the old list forgot
    assert "flowc-0.1.0.dist-info/licenses/LICENSE" in names


def test_installed_it_adds_flowc_alone_to_site_packages(installed: Path) -> None:
    (record,) = installed.parent.glob("lib/python*/site-packages/flowc-*.dist-info/RECORD")
    entries = [line.split(",")[0] for line in record.read_text().splitlines() if line]
    top = {entry.split("/")[0] for entry in entries if not entry.startswith("..")}
    assert top == {"flowc", "flowc-0.1.0.dist-info"}
    assert [entry for entry in entries if entry.startswith("..")] == ["../../../bin/flowc"]


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A folder away from the checkout with a flow, a sample and a tools module in it."""
    shutil.copy(ROOT / "examples" / "code_review.flow", tmp_path)
    shutil.copy(ROOT / "examples" / "samples" / "prints.py", tmp_path)
    (tmp_path / "my_tools.py").write_text(TOOLS_MODULE)
    (tmp_path / "loud.flow").write_text(FLOW)
    return tmp_path


def test_help_check_and_run_work_installed(installed: Path, elsewhere: Path) -> None:
    env = clean_environment(installed)
    helped = run(["flowc", "--help"], cwd=elsewhere, env=env)
    assert helped.stdout.startswith("usage: flowc [-h] [--version] COMMAND ...")
    assert run(["flowc", "--version"], cwd=elsewhere, env=env).stdout == "flowc 0.1.0\n"

    checked = run(["flowc", "check", "code_review.flow"], cwd=elsewhere, env=env)
    assert (checked.stdout, checked.stderr) == ("", "")
    checked = run(["flowc", "check", "loud.flow", "--tools", "my_tools"], cwd=elsewhere, env=env)
    assert (checked.stdout, checked.stderr) == ("", "")

    ran = run(
        ["flowc", "run", "code_review.flow", "--code-file", "prints.py"], cwd=elsewhere, env=env
    )
    assert ran.stderr.endswith("run succeeded in 7 steps\n")
    assert "score: 90\n" in ran.stdout


def test_python_imports_the_namespace_installed(installed: Path, elsewhere: Path) -> None:
    script = (
        "import flowc, flowc.server.app\n"
        "from flowc.runtime import WorkflowEngine, register_tool\n"
        "from flowc.compiler import compile_source\n"
        "print(flowc.__file__.endswith('site-packages/flowc/__init__.py'))\n"
        "print(compile_source('analyze -> end').ir.start)\n"
    )
    result = run(["python", "-c", script], cwd=elsewhere, env=clean_environment(installed))
    assert result.stdout == "True\nanalyze\n"


def test_serve_works_installed_with_tools_from_the_current_folder(
    installed: Path, elsewhere: Path
) -> None:
    port = free_port()
    server = Server(
        ["flowc", "serve", "--port", str(port), "--tools", "my_tools"],
        cwd=elsewhere,
        env=clean_environment(installed),
        port=port,
    )
    try:
        server.wait_until_healthy()
        body = server.create_and_run(FLOW, {"code": "x = 1\n", "message": "hi"})
        assert (body["status"], body["error"]) == ("succeeded", None)
        assert [step["node"] for step in body["steps"]] == ["analyze", "loud"]
        assert body["state"]["message"] == "HIHI" and body["state"]["syntax_ok"] is True
        assert (elsewhere / "flowc.db").is_file()  # the embedded default, in the folder
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_the_pre_commit_hook_runs_the_installed_command(installed: Path, elsewhere: Path) -> None:
    # pre-commit installs the repository as a package and runs `entry` with the staged files.
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert (hook["id"], hook["language"], hook["entry"]) == ("flowc-check", "python", "flowc check")
    assert re.search(hook["files"], "flows/review.flow") and not re.search(hook["files"], "a.py")
    (elsewhere / "broken.flow").write_text("analyze -> -> end\n")
    env = clean_environment(installed)
    passed = run([*hook["entry"].split(), "code_review.flow"], cwd=elsewhere, env=env)
    assert passed.returncode == 0
    failed = run([*hook["entry"].split(), "broken.flow"], cwd=elsewhere, env=env, check=False)
    assert failed.returncode == 1
    assert failed.stdout.startswith("broken.flow:1:12: error[E010]: ")


def test_the_source_distribution_builds_the_same_wheel(
    wheel: Path, tmp_path: Path, installed: Path
) -> None:
    # `python -m build` makes the sdist, then the wheel from the unpacked sdist: what a
    # release pipeline, or pip given only the sdist, does.
    out = tmp_path / "out"
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=tmp_path)
    (sdist,) = out.glob("flowc-*.tar.gz")
    with tarfile.open(sdist) as archive:
        top = {name.split("/")[1] for name in archive.getnames() if name.count("/") >= 1}
    assert top == {
        *PACKAGE_FOLDERS, "flowc", "README.md", "LICENSE", "pyproject.toml", "PKG-INFO",
        ".gitignore",
    }  # fmt: skip
    (rebuilt,) = out.glob("flowc-*.whl")
    with zipfile.ZipFile(rebuilt) as again, zipfile.ZipFile(wheel) as direct:
        assert sorted(again.namelist()) == sorted(direct.namelist())
