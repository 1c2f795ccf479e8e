"""The Dockerfile, read with BuildKit's own parser, and its build context.

No Docker engine here, so the image is checked in two ways: statically (``Stage`` gives each
stage's instructions with quotes and ``${ARG}`` defaults resolved), and by running the two
install steps for real in a scratch directory (``run_step`` maps the container paths the step
uses onto host directories, and nothing else in the command changes).

``DockerIgnore`` applies ``.dockerignore`` with Docker's rules: patterns in order, the last one
matching a path *or one of its parent directories* decides; ``!`` re-includes; ``*`` and ``?``
stay within one path segment, ``**`` spans any number of them (Go ``filepath.Match`` plus
``**``, as in moby's patternmatcher).
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dockerfile

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

_ARG_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class Stage:
    name: str
    base: str
    commands: list[Any] = field(default_factory=list)

    def of(self, cmd: str) -> list[Any]:
        return [c for c in self.commands if c.cmd == cmd]

    def pairs(self, cmd: str, *, before: Any = None) -> dict[str, str]:
        """ENV / LABEL / ARG key-value pairs, quotes removed, later ones winning; with
        ``before``, only those in effect for that instruction (as ENV is for a RUN)."""
        commands = self.commands
        if before is not None:
            commands = commands[: commands.index(before)]
        out: dict[str, str] = {}
        for command in [c for c in commands if c.cmd == cmd]:
            values = list(command.value)
            if cmd == "ARG":
                for value in values:
                    key, _, default = value.partition("=")
                    out[key] = unquote(default)
            else:
                for key, value in zip(values[::2], values[1::2], strict=True):
                    out[key] = unquote(value)
        return out

    def env(self, *, before: Any = None) -> dict[str, str]:
        return self.pairs("ENV", before=before)


def unquote(text: str) -> str:
    parts = shlex.split(text)
    return parts[0] if parts else ""


def substitute(text: str, variables: Mapping[str, str]) -> str:
    return _ARG_REF.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_dockerfile(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, in order."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            image, *rest = command.value
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=substitute(image, global_args)))
        elif not stages:
            assert command.cmd == "ARG", f"only ARG may precede FROM, not {command.cmd}"
            for value in command.value:
                key, _, default = value.partition("=")
                global_args[key] = unquote(default)
        else:
            stages[-1].commands.append(command)
    return global_args, stages


def mount_flags(command: Any) -> list[dict[str, str]]:
    """The ``--mount=k=v,...`` flags of a RUN instruction."""
    return [
        dict(part.split("=", 1) for part in flag.removeprefix("--mount=").split(","))
        for flag in command.flags
        if flag.startswith("--mount=")
    ]


def replay_copies(stage: Stage, context: set[str], root: Path, workdir: Path) -> None:
    """Replay a stage's ``COPY`` instructions from the build context into ``workdir``: a file
    source lands in a ``dest/`` folder (or as ``dest``), a folder source's contents in ``dest``."""
    for copy in stage.of("COPY"):
        assert not copy.flags, "only COPY from the build context is replayed"
        *sources, dest = copy.value
        into_folder = dest.endswith("/") or len(sources) > 1
        target = workdir / dest
        for source in (s.rstrip("/") for s in sources):
            for path in sorted(context):
                if path == source:
                    out = target / Path(path).name if into_folder else target
                elif path.startswith(source + "/"):
                    out = target / Path(path).relative_to(source)
                else:
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / path, out)


def run_step(
    command: str,
    paths: Mapping[str, Path],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run a RUN step's shell command with container paths mapped onto host directories."""
    mapped = command
    for container_path in sorted(paths, key=len, reverse=True):
        pattern = re.compile(rf"(?<![\w./-]){re.escape(container_path)}(?=[/\s]|$)")
        mapped = pattern.sub(str(paths[container_path]), mapped)
    return subprocess.run(
        ["/bin/sh", "-c", mapped],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class DockerIgnore:
    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str], str]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
            self.rules.append((negated, re.compile(self._regex(pattern)), pattern))

    @staticmethod
    def _regex(pattern: str) -> str:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i : end + 1].replace("[!", "[^"), end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return rf"\A{out}\Z"

    def excluded(self, path: str) -> bool:
        parts = path.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for negated, regex, _ in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                result = not negated
        return result

    def may_reinclude_under(self, directory: str) -> bool:
        return any(neg and p.startswith(directory + "/") for neg, _, p in self.rules)

    def context(self, root: Path) -> Iterator[str]:
        """The files `docker build root` would send, relative to ``root``."""
        for current, dirs, files in os.walk(root):
            rel_dir = Path(current).relative_to(root).as_posix()
            prefix = "" if rel_dir == "." else rel_dir + "/"
            dirs[:] = [
                d
                for d in dirs
                if not self.excluded(prefix + d) or self.may_reinclude_under(prefix + d)
            ]
            for name in files:
                if not self.excluded(prefix + name):
                    yield prefix + name


def docker_ignore() -> DockerIgnore:
    return DockerIgnore(DOCKERIGNORE.read_text())
