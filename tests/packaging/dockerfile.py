"""A Dockerfile -> its build steps, replayed in temporary folders instead of image layers.

Docker does not run on our CI machines, so the image's build is reproduced: each stage gets
a folder that stands for its file system (absolute paths in its steps are rewritten into
it) and a new virtual environment that stands for the base image's Python.  `COPY` honours
`.dockerignore`; `RUN` runs each `&&`-joined command with `sh`, except the few that need
root inside an image (`SKIPPED`), which the test must be told about by name.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: Commands that only make sense as root inside an image: user accounts and ownership.
SKIPPED = ("useradd", "chown")


@dataclass
class Instruction:
    """One Dockerfile instruction: its keyword, arguments and line."""

    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    """A build stage: its name, file system folder, Python, environment and working folder."""

    name: str
    root: Path
    bin_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    exposed: list[int] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def path(self, inside: str) -> Path:
        """A path of the image's file system, as a path in this stage's folder."""
        return self.root / inside.lstrip("/")


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: comments dropped, continued lines joined."""
    found: list[Instruction] = []
    pending = ""
    first = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            first = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), first))
    return found


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether `.dockerignore` keeps `relative` out of the context (the last match wins)."""
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern(pattern.removeprefix("!"))
        parts = relative.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def _pattern(pattern: str) -> re.Pattern[str]:
    out = ""
    index = 0
    pattern = pattern.strip("/")
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            out += ".*"
            index += 2
        elif pattern[index] == "*":
            out += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            out += "[^/]"
            index += 1
        else:
            out += re.escape(pattern[index])
            index += 1
    return re.compile(out)


def copy_context(context: Path, target: Path) -> None:
    """Copy the build context into `target` as `COPY . .` would: `.dockerignore` applied,
    symbolic links copied as links."""
    ignore_file = context / ".dockerignore"
    patterns = [
        line.strip()
        for line in (ignore_file.read_text().splitlines() if ignore_file.exists() else [])
        if line.strip() and not line.startswith("#")
    ]
    for folder, directories, files in os.walk(context):
        here = Path(folder)
        for name in [*directories, *files]:
            source = here / name
            relative = source.relative_to(context).as_posix()
            if ignored(relative, patterns):
                if name in directories:
                    directories.remove(name)
                continue
            destination = target / relative
            if source.is_symlink():
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.symlink_to(os.readlink(source))
                if name in directories:
                    directories.remove(name)
            elif source.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination)


@dataclass
class Build:
    """The replay of a Dockerfile; `stages[-1]` is the image."""

    context: Path
    folder: Path
    #: Makes a new Python environment in a folder (the base image's); its `bin` folder.
    new_python: Callable[[Path], Path]
    #: The environment a step runs in, given the stage's `bin` folder (first on PATH).
    environment: Callable[[Path], dict[str, str]]
    #: Runs a shell command in a folder with an environment; fails the test if it fails.
    run: Callable[[str, Path, dict[str, str]], None]
    stages: list[Stage] = field(default_factory=list)

    def replay(self, dockerfile: str) -> Stage:
        """Every instruction in order; the final stage."""
        for instruction in instructions(dockerfile):
            step = getattr(self, f"_{instruction.keyword.lower()}", None)
            if step is None:
                raise ValueError(f"line {instruction.line}: cannot replay {instruction.keyword}")
            step(instruction.arguments)
        return self.stages[-1]

    @property
    def stage(self) -> Stage:
        """The stage being built."""
        return self.stages[-1]

    def _from(self, arguments: str) -> None:
        words = arguments.split()
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(self.stages))
        root = self.folder / f"stage-{len(self.stages)}"
        root.mkdir(parents=True)
        self.stages.append(Stage(name, root, self.new_python(self.folder / f"python-{name}")))

    def _env(self, arguments: str) -> None:
        for pair in shlex.split(arguments):
            key, _, value = pair.partition("=")
            self.stage.env[key] = value

    def _workdir(self, arguments: str) -> None:
        self.stage.workdir = arguments
        self.stage.path(arguments).mkdir(parents=True, exist_ok=True)

    def _copy(self, arguments: str) -> None:
        words = shlex.split(arguments)
        source_stage = None
        if words[0].startswith("--from="):
            source_stage = next(s for s in self.stages if s.name == words[0][len("--from=") :])
            words = words[1:]
        *sources, destination = words
        target = self._resolve(destination)
        for source in sources:
            if source_stage is None:
                if source != ".":
                    raise ValueError(f"only `COPY . DEST` is replayed, not {source}")
                copy_context(self.context, target)
            else:
                shutil.copytree(source_stage.path(source), target, dirs_exist_ok=True)

    def _run(self, arguments: str) -> None:
        for command in arguments.split("&&"):
            command = command.strip()
            if command.split()[0] in SKIPPED:
                self.stage.skipped.append(command)
                continue
            rewritten = re.sub(r"(?<![\w.:/])/(?=\w)", f"{self.stage.root}/", command)
            env = {**self.environment(self.stage.bin_dir), **self.stage.env}
            self.run(rewritten, self._resolve("."), env)

    def _user(self, arguments: str) -> None:
        pass  # the replay runs as whoever runs the test

    def _expose(self, arguments: str) -> None:
        self.stage.exposed.extend(int(port) for port in arguments.split())

    def _healthcheck(self, arguments: str) -> None:
        self.stage.healthcheck = json.loads(arguments[arguments.index("CMD") + 3 :])

    def _cmd(self, arguments: str) -> None:
        self.stage.command = json.loads(arguments)

    def _resolve(self, path: str) -> Path:
        inside = path if path.startswith("/") else f"{self.stage.workdir.rstrip('/')}/{path}"
        return self.stage.path(inside)
