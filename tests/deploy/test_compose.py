"""compose.yml and the Dockerfiles: checked with `docker-compose config` (no Docker engine runs
on our machines, docs/design.md D8), and against the roles' own pyproject.toml."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_tool

COMPOSE = ROOT / "compose.yml"
DOCKER = ROOT / "deploy" / "docker"
ROLE_DIRS = {
    "bluegrass-core": "core",
    "bluegrass-cloud": "cloud",
    "bluegrass-laptop": "laptop-client",
    "bluegrass-appliance": "appliance",
    "bluegrass-panel": "panel",
}
PROFILES = {"cloud": {"cloud"}, "laptop": {"laptop"}, "pi": {"appliance"}}
DOCKERFILES = {
    "cloud": ["bluegrass-cloud"],
    "laptop": ["bluegrass-laptop"],
    "pi": ["bluegrass-appliance"],
}


def compose_config(profile: str | None, **env: str) -> dict[str, Any]:
    """`docker-compose config` for a profile, parsed. The YAML is read with the python3-yaml
    that Debian's docker-compose itself runs on (the venv has no YAML parser)."""
    docker_compose = require_tool("docker-compose")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGRASS_")}
    args = [docker_compose, "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    if profile:
        args += ["--profile", profile]
    done = subprocess.run(
        [*args, "config"], capture_output=True, text=True, env={**clean, **env}, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    to_json = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    parsed = subprocess.run(
        ["/usr/bin/python3", "-c", to_json], input=done.stdout, capture_output=True, text=True
    )
    assert parsed.returncode == 0, parsed.stderr
    return json.loads(parsed.stdout)


def services_of(config: dict[str, Any], profile: str) -> set[str]:
    return {name for name, s in config["services"].items() if profile in s.get("profiles", [])}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_profile_is_valid_and_selects_its_role(profile: str) -> None:
    config = compose_config(profile)
    assert services_of(config, profile) == PROFILES[profile]


def test_every_service_has_exactly_one_profile() -> None:
    """`docker compose up` without a profile must start nothing."""
    config = compose_config(None)
    for name, service in config["services"].items():
        assert len(service.get("profiles", [])) == 1, name
    assert set().union(*PROFILES.values()) == set(config["services"])


def test_cloud_service() -> None:
    cloud = compose_config("cloud")["services"]["cloud"]
    assert cloud["build"]["dockerfile"] == "deploy/docker/cloud.Dockerfile"
    assert cloud["stop_grace_period"] == "90s"
    ports = [json.dumps(p) for p in cloud["ports"]]
    assert any('"published": 2022' in p and '"target": 2022' in p for p in ports), ports
    # The device port is TLS with a pinned key: published like the sync endpoint.
    assert any('"published": 8443' in p and '"target": 8443' in p for p in ports), ports
    # The plain-HTTP side is only on loopback, for a TLS proxy, unless asked otherwise.
    assert "127.0.0.1:8080:8080/tcp" in cloud["ports"]
    exposed = compose_config("cloud", BLUEGRASS_HTTP_BIND="0.0.0.0")["services"]["cloud"]
    assert "0.0.0.0:8080:8080/tcp" in exposed["ports"]
    assert any(v.endswith(":/data:rw") for v in cloud["volumes"]), cloud["volumes"]
    assert "/health" in " ".join(cloud["healthcheck"]["test"])


def test_pi_service() -> None:
    appliance = compose_config("pi")["services"]["appliance"]
    assert appliance["privileged"] is True
    assert appliance["network_mode"] == "host"
    assert "/dev:/dev:rw" in appliance["volumes"]
    assert "/run/udev:/run/udev:ro" in appliance["volumes"]
    mounts = [v for v in appliance["volumes"] if isinstance(v, dict)]
    assert mounts[0]["bind"]["propagation"] == "rshared"
    assert appliance["stop_grace_period"] == "90s"
    # The daemon serves the panel itself; its port is one setting.
    assert appliance["command"] == ["bluegrass-appliance", "run", "--panel-port", "8080"]
    moved = compose_config("pi", BLUEGRASS_PANEL_PORT="80")["services"]["appliance"]
    assert moved["command"][-1] == "80"


def test_laptop_service_runs_as_the_folders_owner() -> None:
    laptop = compose_config("laptop", BLUEGRASS_UID="1234", BLUEGRASS_GID="99")["services"][
        "laptop"
    ]
    assert laptop["user"] == "1234:99"
    assert any(str(v).endswith(":/folders:rw") for v in laptop["volumes"])


def local_closure(distribution: str) -> set[str]:
    """The Bluegrass distributions `distribution` needs, itself included (from pyproject)."""
    found = {distribution}
    project = tomllib.loads((ROOT / ROLE_DIRS[distribution] / "pyproject.toml").read_text())
    for requirement in project["project"].get("dependencies", []):
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        if name in ROLE_DIRS:
            found |= local_closure(name)
    return found


@pytest.mark.parametrize("role", sorted(DOCKERFILES))
def test_dockerfile_installs_only_its_roles_distributions(role: str) -> None:
    text = (DOCKER / f"{role}.Dockerfile").read_text()
    assert text.startswith("# syntax=docker/dockerfile:1\n")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    needed: set[str] = set()
    for distribution in DOCKERFILES[role]:
        needed |= local_closure(distribution)
    folders = {ROLE_DIRS[d] for d in needed}
    copied = set(re.findall(r"^COPY (\S+)/ \1/$", text, re.M))
    assert copied == folders, f"{role}: copies {copied}, needs {folders}"
    wheel = re.search(r"pip wheel (?:[^\n\\]|\\\n)*", text)
    assert wheel is not None
    assert set(re.findall(r"\./([\w-]+)", wheel.group(0))) == folders
    installed = re.search(r"--find-links /wheels ([^\n]+)", text)
    assert installed is not None
    assert installed.group(1).split() == DOCKERFILES[role]


def test_laptop_image_pulls_no_server_side_package() -> None:
    lines = (DOCKER / "laptop.Dockerfile").read_text().lower().splitlines()
    text = "\n".join(line for line in lines if not line.startswith("#"))
    for word in ("appliance/", "panel/", "cloud/", "flask", "gunicorn", "pyudev"):
        assert word not in text, word


def test_build_context_leaves_out_the_venv_and_builds() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "build", "tests"):
        assert entry in ignored
    entrypoint = DOCKER / "cloud-entrypoint.sh"
    assert entrypoint.stat().st_mode & 0o111
    assert "init" in entrypoint.read_text() and 'exec "$@"' in entrypoint.read_text()


def test_env_example_names_every_variable_compose_uses() -> None:
    used = set(re.findall(r"\$\{(BLUEGRASS_\w+)", COMPOSE.read_text()))
    documented = set(
        re.findall(r"^(BLUEGRASS_\w+)=", (ROOT / "deploy/env.example").read_text(), re.M)
    )
    assert used == documented


def test_dockerfiles_referenced_exist() -> None:
    config = compose_config(None)
    for service in config["services"].values():
        if "build" in service:
            assert (Path(service["build"]["context"]) / service["build"]["dockerfile"]).is_file()


def test_named_volumes_of_unprivileged_services_are_owned_in_the_image() -> None:
    """A new named volume takes the owner of the folder it is mounted on in the image."""
    config = compose_config(None)
    for name, service in config["services"].items():
        user = service.get("user", "root").split(":")[0]
        if user == "root":
            continue
        image = service.get("build", {}).get("dockerfile") or next(
            s["build"]["dockerfile"]
            for s in config["services"].values()
            if s.get("image") == service["image"] and "build" in s
        )
        dockerfile = (ROOT / image).read_text()
        for volume in service.get("volumes", []):
            if (
                isinstance(volume, str)
                and not volume.startswith(("/", "."))
                and volume.endswith(":rw")
            ):
                target = volume.split(":")[1]
                assert re.search(
                    rf"install -d -o \S+ -g \S+ -m 0700 [^\n]*{re.escape(target)}", dockerfile
                ) or re.search(rf"install -d -o[^\n]*\n[^\n]*{re.escape(target)}", dockerfile), (
                    f"{name}: {target} is not made in {image}"
                )
