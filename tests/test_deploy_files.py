"""The deployment files keep their promises, checked without building or running them.

No container builder runs in CI, so the Dockerfile's promises are read from its text:
two stages, a slim Python base, no compiler in the image that ships, a non-root user
that owns the warmed numba cache, a health check on /readyz, `hashdb` as the
entrypoint and `serve` as the default command. compose.yaml's structure is checked
the same way (roles, their order, shared volumes, the proxy's network trusted and
no other), as are nginx's limits against the settings' defaults and the systemd
units' hardening. Every HASHDB_* variable any of them sets must be a setting, so a
typo (silently ignored at run time) fails here. tests/test_deploy_roles.py runs the
compose roles.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from hashdb.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SETTINGS = {f"HASHDB_{name.upper()}" for name in Settings.model_fields}
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN")


# ---- Dockerfile ------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def index(self, keyword: str, containing: str = "") -> int:
        for n, (kw, args) in enumerate(self.instructions):
            if kw == keyword and containing in args:
                return n
        raise AssertionError(f"no {keyword} {containing!r} in stage {self.name}")


def dockerfile_stages() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    return args, stages


def installed_packages(stage: Stage) -> set[str]:
    packages: set[str] = set()
    for command in stage.all("RUN"):
        for words in re.findall(r"apt-get\s+install\s+([^&;|]+)", command):
            packages |= {w for w in shlex.split(words) if not w.startswith("-")}
    return packages


def test_the_image_is_built_in_one_stage_and_shipped_from_a_clean_slim_one() -> None:
    _, stages = dockerfile_stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert final.base.startswith("python:3.11-slim")
    assert builder.base == final.base  # the venv's interpreter path is the same in both
    assert any("--from=" + str(builder.name) in c for c in final.all("COPY"))
    compilers = {"build-essential", "gcc", "g++", "make", "clang"}
    assert installed_packages(builder) & compilers  # pdqhash is built from source there
    assert not installed_packages(final) & compilers
    assert not any("-dev" in p for p in installed_packages(final))


def test_the_image_runs_as_a_user_that_owns_its_numba_cache() -> None:
    _, stages = dockerfile_stages()
    final = stages[-1]
    [user] = final.all("USER")
    assert user not in {"root", "0", "0:0"}
    env = " ".join(final.all("ENV"))
    cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", env)
    assert cache, "NUMBA_CACHE_DIR is not set"
    assert any(cache.group(1) in run and "chown" in run for run in final.all("RUN"))
    warm = final.index("RUN", "warm_kernels")
    assert warm > final.index("USER"), "kernels must be compiled by the runtime user"
    assert warm > final.index("COPY"), "and after the code they are cached for is in place"


def test_the_image_checks_readiness_and_serves_by_default() -> None:
    _, stages = dockerfile_stages()
    final = stages[-1]
    [health] = final.all("HEALTHCHECK")
    assert "/readyz" in health
    assert final.all("ENTRYPOINT") == ['["hashdb"]']
    assert final.all("CMD") == ['["serve"]']


def test_the_build_context_is_an_allow_list() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "hashdb", "ingest", "api"}


# ---- compose.yaml ------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def environment(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in (service(name).get("environment") or {}).items()}


def mounts(name: str) -> dict[str, str]:
    """Container path -> source (volume name or host path), for a service."""
    found = {}
    for entry in service(name).get("volumes", []):
        parts = entry.split(":")  # a source may hold ${VAR:-default}: read from the right
        if parts[-1] in {"ro", "rw", "z", "Z"}:
            parts.pop()
        found[parts[-1]] = ":".join(parts[:-1])
    return found


def test_compose_runs_the_four_roles_behind_a_proxy() -> None:
    assert set(compose()["services"]) == {"postgres", "migrate", "api", "worker", "proxy"}
    assert service("migrate")["command"] == ["migrate"]
    assert service("migrate")["restart"] == "no"
    assert service("api")["command"] == ["serve"]
    assert service("api")["deploy"]["replicas"] == 2
    assert service("worker")["command"] == ["worker"]
    assert "ports" not in service("api") and "ports" not in service("worker")
    assert list(service("proxy")["ports"]) == ["8080:80"]


def test_nothing_starts_before_the_migration_succeeded_on_a_healthy_database() -> None:
    assert service("migrate")["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for role in ("api", "worker"):
        assert service(role)["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }
    assert "pg_isready" in " ".join(service("postgres")["healthcheck"]["test"])
    assert mounts("postgres")["/var/lib/postgresql/data"] in compose()["volumes"]


def test_only_the_api_is_health_checked_on_readyz() -> None:
    for role in ("migrate", "worker"):
        assert service(role)["healthcheck"] == {"disable": True}
    assert "healthcheck" not in service("api")  # the image's, on /readyz


def test_api_and_worker_share_snapshots_and_the_import_root() -> None:
    api, worker = environment("api"), environment("worker")
    for name in ("HASHDB_DATABASE_URL", "HASHDB_SNAPSHOT_DIR", "HASHDB_IMPORT_ROOT"):
        assert api[name] == worker[name], name
    snapshots = api["HASHDB_SNAPSHOT_DIR"]
    assert mounts("api")[snapshots] == mounts("worker")[snapshots]
    assert mounts("api")[snapshots] in compose()["volumes"]
    imports = api["HASHDB_IMPORT_ROOT"]
    assert mounts("api")[imports] == mounts("worker")[imports]


def test_only_the_proxys_network_is_trusted_and_the_proxy_is_on_it() -> None:
    subnet = compose()["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    assert environment("api")["HASHDB_TRUSTED_PROXIES"] == subnet
    proxy_networks = service("proxy")["networks"]
    assert list(proxy_networks) == ["edge"]
    address = ipaddress.ip_address(proxy_networks["edge"]["ipv4_address"])
    assert address in ipaddress.ip_network(subnet)
    assert set(service("api")["networks"]) == {"backend", "edge"}
    for role in ("postgres", "migrate", "worker"):
        assert service(role)["networks"] == ["backend"], role


def test_compose_holds_no_secrets_and_only_known_settings() -> None:
    for name, svc in compose()["services"].items():
        for key in svc.get("environment") or {}:
            assert not SECRET_NAMES.search(key), f"{name} sets {key} in compose.yaml"
            if key.startswith("HASHDB_"):
                assert key in SETTINGS, f"{name}: {key} is not a setting"
        for env_file in svc.get("env_file", []):
            # deploy/*.env are ignored by git; each has an example to copy.
            assert env_file.startswith("deploy/") and env_file.endswith(".env"), env_file
            assert (ROOT / f"{env_file}.example").is_file(), env_file
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert "*.env" in ignored


def test_the_example_environment_names_only_settings_and_libpq() -> None:
    for line in (DEPLOY / "hashdb.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key = line.split("=", 1)[0]
            assert key in SETTINGS or key == "PGPASSWORD", key


# ---- nginx -------------------------------------------------------------------------


def nginx() -> str:
    return (DEPLOY / "nginx.conf").read_text(encoding="utf-8")


def directive(name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", nginx(), flags=re.MULTILINE)


def test_nginx_buffers_whole_requests_and_answers_up_to_the_upload_limit() -> None:
    assert directive("proxy_request_buffering") == ["on"]
    assert directive("proxy_buffering") == ["on"]
    [size] = directive("client_max_body_size")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    number = int(size[:-1]) * units[size[-1].lower()] if size[-1].isalpha() else int(size)
    assert number == Settings.model_fields["max_upload_bytes"].default


def test_nginx_forwards_to_every_replica_and_says_who_the_client_was() -> None:
    port = environment("api")["HASHDB_BIND"].rpartition(":")[2]
    [server] = [s for s in directive("server") if s.startswith("api:")]
    assert server.split()[0] == f"api:{port}"
    assert "resolve" in server.split()  # replicas found again as they come and go
    assert "X-Forwarded-For $remote_addr" in directive("proxy_set_header")
    assert re.search(r"location = /readyz\s*\{\s*proxy_pass", nginx())
    assert re.search(r"location = /metrics\s*\{\s*return 404;", nginx())


# ---- systemd -------------------------------------------------------------------------


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit's sections: key -> every value given (systemd allows repeats)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (DEPLOY / "systemd" / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


UNITS = {
    "migrate": "hashdb-migrate.service",
    "api": "hashdb-api.service",
    "worker": "hashdb-worker.service",
}


@pytest.mark.parametrize("role", sorted(UNITS))
def test_each_systemd_unit_runs_its_compose_role_as_a_confined_user(role: str) -> None:
    service_section = unit(UNITS[role])["Service"]
    [exec_start] = service_section["ExecStart"]
    assert exec_start.split()[1:] == service(role)["command"]
    assert service_section["User"] == ["hashdb"]
    assert service_section["EnvironmentFile"] == ["/etc/hashdb/hashdb.env"]
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert service_section[hardening] == ["yes"], hardening
    assert service_section["ProtectSystem"] == ["strict"]
    assert service_section["CapabilityBoundingSet"] == [""]
    # numba writes compiled kernels to executable memory: this one would stop it.
    assert "MemoryDenyWriteExecute" not in service_section
    for assignment in service_section.get("Environment", []):
        assert assignment.split("=", 1)[0] in SETTINGS | {"NUMBA_CACHE_DIR"}, assignment


def test_the_migration_is_a_oneshot_the_other_units_require() -> None:
    assert unit(UNITS["migrate"])["Service"]["Type"] == ["oneshot"]
    for role in ("api", "worker"):
        section = unit(UNITS[role])["Unit"]
        assert section["Requires"] == [UNITS["migrate"]]
        assert UNITS["migrate"] in section["After"][0].split()
