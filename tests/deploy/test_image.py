"""The container image (Dockerfile, .dockerignore) without a Docker engine.

Static: the Dockerfile parsed by BuildKit's parser (the ``dockerfile`` package), every rule of
the hardened image asserted. Dynamic: the build context is assembled as ``docker build`` would
(.dockerignore applied, the build stage's COPY instructions replayed), the build stage's
``pip wheel`` step and the runtime stage's install step run for real into a scratch directory
(needs PyPI, like ``make install``), and the installed ``skuflow`` is run: it answers, loads
the chart's rendered settings, and writes nothing into its installation.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import (
    FAKE_SECRET,
    chart_defaults,
    container,
    pod_environment,
    render_file,
    secret_values,
    values_file,
)
from tests.deploy.image import (
    DOCKERFILE,
    REPO,
    Stage,
    docker_ignore,
    mount_flags,
    parse_dockerfile,
    replay_copies,
    run_step,
    substitute,
)

GLOBAL_ARGS, STAGES = parse_dockerfile()
BUILD, RUNTIME = STAGES[0], STAGES[-1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VENV = "/opt/skuflow"
INSTALL_TIMEOUT = 240


def _shell(stage: Stage) -> str:
    return "\n".join(" ".join(c.value) for c in stage.of("RUN"))


# --- static rules ------------------------------------------------------------------------------


def test_two_stages_on_the_official_slim_python_base() -> None:
    # BuildKit's Dockerfile frontend: RUN --mount (the wheels' bind mount) needs it.
    assert DOCKERFILE.read_text().startswith("# syntax=docker/dockerfile:1\n")
    assert [s.name for s in STAGES] == ["build", "runtime"]
    for stage in STAGES:
        # The Docker Official Image (library/python), slim variant, on the tested Python minor.
        assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?", stage.base), stage.base
    assert RUNTIME.base == BUILD.base  # the runtime does not start FROM the build stage


def test_the_build_stage_builds_every_wheel() -> None:
    (step,) = BUILD.of("RUN")
    assert re.search(r"\bpip wheel\b.*--wheel-dir /wheels \.$", step.value[0])


def test_the_runtime_stage_has_no_compiler_no_sources_and_no_wheels_left() -> None:
    shell = _shell(RUNTIME)
    for tool in ("apt-get", "apk", "gcc", "cc ", "make", "build-essential", "pip wheel", "git"):
        assert tool not in shell, f"runtime stage runs {tool}"
    # Nothing is COPYed into the runtime: the wheels are bind-mounted from the build stage for
    # the one install step, so neither sources nor wheel files become a layer.
    assert RUNTIME.of("COPY") == []
    assert RUNTIME.of("ADD") == []
    installs = [c for c in RUNTIME.of("RUN") if mount_flags(c)]
    (install,) = installs
    (mount,) = mount_flags(install)
    assert mount == {"type": "bind", "from": "build", "source": "/wheels", "target": "/wheels"}
    assert "--no-index" in install.value[0]  # only the build stage's wheels, no registry
    assert "--without-pip" in install.value[0]  # no pip inside the application's virtualenv


def test_it_runs_as_a_fixed_non_root_user() -> None:
    users = RUNTIME.of("USER")
    assert users, "the runtime stage must set USER"
    uid, gid = (int(part) for part in users[-1].value[0].split(":"))
    # Numeric ids, so Kubernetes' runAsNonRoot can verify them; above the system range.
    assert uid >= 1000
    assert gid >= 1000
    # The account exists with exactly those ids (getpass / libpq look the user up).
    shell = _shell(RUNTIME)
    assert re.search(rf"groupadd .*--gid {gid} skuflow", shell)
    assert re.search(rf"useradd .*--uid {uid} --gid {gid}\b", shell)
    # USER comes after every RUN: nothing runs as root after it, and nothing needs to.
    commands = [c.cmd for c in RUNTIME.commands]
    assert commands.index("USER") > max(i for i, cmd in enumerate(commands) if cmd == "RUN")
    # The chart's pod and container securityContext use the same ids.
    defaults = chart_defaults()
    assert defaults["podSecurityContext"]["runAsUser"] == uid
    assert defaults["podSecurityContext"]["runAsGroup"] == gid
    assert defaults["securityContext"]["runAsUser"] == uid


def test_the_runtime_environment_suits_a_read_only_root_filesystem() -> None:
    env = RUNTIME.env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # bytecode is compiled at build time instead
    assert env["PATH"].split(":")[0] == f"{VENV}/bin"
    assert env["HOME"] == "/tmp"  # the only writable path (an emptyDir in the chart)
    assert RUNTIME.of("WORKDIR")[-1].value == ("/tmp",)
    assert not any(c.cmd == "VOLUME" for c in RUNTIME.commands)


def test_the_entrypoint_is_skuflow_run_in_exec_form() -> None:
    (entrypoint,) = RUNTIME.of("ENTRYPOINT")
    assert entrypoint.json, "shell form would make /bin/sh PID 1 and swallow SIGTERM"
    assert entrypoint.value == (f"{VENV}/bin/skuflow", "run")
    assert RUNTIME.of("CMD") == []
    assert RUNTIME.of("SHELL") == []
    (stop,) = RUNTIME.of("STOPSIGNAL")
    assert stop.value == ("SIGTERM",)
    (expose,) = RUNTIME.of("EXPOSE")
    assert expose.value == (str(chart_defaults()["health"]["port"]),)
    assert PYPROJECT["project"]["scripts"]["skuflow"] == "skuflow.cli:main"


def test_oci_labels() -> None:
    args = {**GLOBAL_ARGS, **{k: v for k, v in RUNTIME.pairs("ARG").items() if v}}
    labels = {k: substitute(v, args) for k, v in RUNTIME.pairs("LABEL").items()}
    prefix = "org.opencontainers.image."
    for key in ("title", "description", "version", "licenses", "base.name"):
        assert labels.get(prefix + key), f"missing label {prefix}{key}"
    assert labels[prefix + "version"] == PYPROJECT["project"]["version"]
    assert labels[prefix + "licenses"] == PYPROJECT["project"]["license"]["text"]
    assert labels[prefix + "base.name"] == RUNTIME.base


def test_no_secret_is_baked_into_the_image() -> None:
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE|_KEY\b|DATABASE_URL", re.I)
    for stage in STAGES:
        for cmd in ("ENV", "ARG", "LABEL"):
            for key, value in stage.pairs(cmd).items():
                assert not secretish.search(key), f"{stage.name}: {cmd} {key}"
                assert "://" not in value or "@" not in value, f"{stage.name}: {cmd} {key}"
        assert not any("secret" in " ".join(c.flags) for c in stage.of("RUN"))
    ignore = docker_ignore()
    for path in (".env", "config/.env.prod", "config/kafka.pem", "worker/tls.key", "x.p12"):
        assert ignore.excluded(path), f"{path} would reach the build context"
    context = set(ignore.context(REPO))
    assert not any(re.search(r"(^|/)\.env|\.pem$|\.key$", path) for path in context)


def test_the_build_context_is_exactly_what_the_build_copies() -> None:
    ignore = docker_ignore()
    context = set(ignore.context(REPO))
    for outside in (".git/HEAD", ".venv/pyvenv.cfg", "tests/__init__.py", "Dockerfile", "Makefile"):
        assert ignore.excluded(outside), outside
    copied: list[str] = []
    for copy in BUILD.of("COPY"):
        assert not copy.flags, "the build stage copies from the context only"
        *sources, _dest = copy.value
        for source in sources:
            source = source.rstrip("/")
            assert any(p == source or p.startswith(source + "/") for p in context), source
            copied.append(source)
    # Every file sent is copied (no stray context), and nothing bytecode-ish is sent.
    assert all(any(p == c or p.startswith(c + "/") for c in copied) for p in context)
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in context)
    # The distribution's runtime packages are all copied; devstack (embedded broker, database
    # and simulators for `skuflow dev`) stays out of the production image.
    packages = {
        p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages - {"devstack"} <= set(copied)
    assert "devstack" not in copied
    assert {"pyproject.toml", "README.md"} <= set(copied)


# --- the install steps, run for real --------------------------------------------------------


@dataclass
class Installed:
    root: Path
    venv: Path
    env: dict[str, str]

    def skuflow(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "skuflow"), *args],
            env={**self.env, **(env or {})},
            cwd=self.root / "tmp",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _stage_env(stage: Stage, paths: dict[str, Path], *, before: Any = None) -> dict[str, str]:
    """This machine's environment plus the stage's ENV in effect ``before`` an instruction
    (all of it by default), container paths mapped."""
    env = dict(os.environ)
    # `python` in the steps is a CPython 3.11 with pip, as on the base image.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    for key, value in stage.env(before=before).items():
        for container_path, host_path in paths.items():
            value = re.sub(
                rf"(?<![\w./-]){re.escape(container_path)}(?=[/:]|$)", str(host_path), value
            )
        env[key] = substitute(value, env)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("image")
    src, wheels, opt = root / "src", root / "wheels", root / "opt"
    (root / "tmp").mkdir()
    # The build stage: its WORKDIR, filled by its COPY instructions from the build context.
    assert BUILD.of("WORKDIR")[-1].value == ("/src",)
    replay_copies(BUILD, set(docker_ignore().context(REPO)), REPO, src)
    (build_step,) = BUILD.of("RUN")
    build_paths = {"/wheels": wheels, "/src": src}
    built = run_step(
        build_step.value[0],
        build_paths,
        env=_stage_env(BUILD, build_paths, before=build_step),
        cwd=src,
        timeout=INSTALL_TIMEOUT,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    # The runtime stage's install step: /wheels is the build stage's /wheels (bind mount).
    (install,) = [c for c in RUNTIME.of("RUN") if mount_flags(c)]
    (mount,) = mount_flags(install)
    assert mount["from"] == BUILD.name
    runtime_paths = {mount["target"]: build_paths[mount["source"]], VENV: opt / "skuflow"}
    done = run_step(
        install.value[0],
        runtime_paths,
        env=_stage_env(RUNTIME, runtime_paths, before=install),
        cwd=root / "tmp",
        timeout=INSTALL_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The container's environment: the runtime stage's ENV, none of this machine's settings.
    run_env = {
        key: value
        for key, value in _stage_env(RUNTIME, {**runtime_paths, "/tmp": root / "tmp"}).items()
        if key in RUNTIME.env() or not key.startswith(("SKUFLOW_", "OTEL_", "PG", "PYTHON"))
    }
    return Installed(root=root, venv=opt / "skuflow", env=run_env)


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.timeout(INSTALL_TIMEOUT * 2 + 60)
def test_the_install_steps_produce_a_working_skuflow(installed: Installed) -> None:
    venv = installed.venv
    assert (venv / "bin" / "skuflow").is_file()
    assert not (venv / "bin" / "pip").exists(), "pip must not ship in the application venv"
    site = next(venv.glob("lib/python3.*/site-packages"))
    assert list(site.glob("pip")) == []
    assert list(site.glob("pip-*")) == []
    assert not (site / "devstack").exists()
    # Bytecode was compiled at install (build) time...
    assert list((site / "skuflow" / "__pycache__").glob("cli.cpython-*.pyc"))
    before = _files(venv)
    answered = installed.skuflow("run", "--help")
    assert answered.returncode == 0, answered.stderr
    assert "--class" in answered.stdout
    # ...and running the worker's code writes nothing into the installation: it works on a
    # read-only root filesystem.
    assert _files(venv) == before


@pytest.mark.timeout(INSTALL_TIMEOUT * 2 + 60)
@pytest.mark.parametrize("values", [None, "full.yaml"])
def test_the_installed_worker_accepts_the_charts_settings(
    installed: Installed, values: str | None
) -> None:
    """`skuflow config check` inside the "image", fed what a pod gets from the chart: the
    ConfigMap files at their mount path and the environment with the Secret's keys."""
    rendered = render_file(values)
    secrets = secret_values(values_file(values) if values else None)
    mount = installed.root / "etc" / "skuflow" / "config"
    mount.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.one("ConfigMap")["data"].items():
        (mount / name).write_text(text.replace("/etc/skuflow/config", str(mount)))
    deployment = next(iter(rendered.deployments().values()))
    env = pod_environment(deployment, secrets)
    env["SKUFLOW_CONFIG"] = str(mount / Path(env["SKUFLOW_CONFIG"]).name)
    checked = installed.skuflow("config", "check", env=env)
    assert checked.returncode == 0, checked.stderr
    resolved = json.loads(checked.stdout)
    assert (
        resolved["kafka"]["bootstrap"]
        == rendered.settings_toml().split('bootstrap = "')[1].split('"')[0]
    )
    assert resolved["health"]["port"] == container(deployment)["ports"][0]["containerPort"]
    for key, secret in {**FAKE_SECRET, **secrets}.items():
        if key.endswith(("password", "secret", "token")):
            assert secret not in checked.stdout, f"{key} printed by config check"


@pytest.mark.timeout(INSTALL_TIMEOUT * 2 + 60)
def test_the_installed_package_ships_every_migration(installed: Installed) -> None:
    """Package data reaches the wheel: an editable install (the tests') would hide a miss."""
    site = next(installed.venv.glob("lib/python3.*/site-packages"))
    for package in ("worker", "handlers"):
        source = sorted(p.name for p in (REPO / package / "migrations").glob("*.sql"))
        shipped = sorted(p.name for p in (site / package / "migrations").glob("*.sql"))
        assert shipped == source, f"{package}/migrations"
