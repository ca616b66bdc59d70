"""deploy/compose.yaml cannot run here (no Docker): what can be checked without it is.

Its services that run the bot's image set only real settings (bot/config.py) and the AWS
chain's credentials, and each one's environment, over deploy/.env.example, is accepted
by the bot's own settings parser; the bot processes' SHARD_IDS are disjoint and cover
SHARD_COUNT, as the multi-process test runs them; they share one index and one object
store with the front, keep their recordings on volumes of their own, and leave the slash
commands to the one-shot sync-commands; every password comes from deploy/compose.env.example.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import VARIABLES, Settings, load_dotenv
from tests.multiprocess.layout import SHARDS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
#: The image deploy/Dockerfile builds.
IMAGE = "voice-recorder-bot"
#: Credentials the object store client reads through the standard AWS chain (README: "Recordings in object storage").
AWS_CHAIN = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
_INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
#: A value of the right shape for the token deploy/.env.example leaves empty.
_TOKEN = "example.token.value"


def _interpolated(text: str, values: dict[str, str]) -> str:
    """What ``docker compose --env-file deploy/compose.env`` makes of `text`."""
    return _INTERPOLATION.sub(lambda m: values[m.group(1)], text).replace("$$", "$")


@pytest.fixture(scope="module")
def compose_env() -> dict[str, str]:
    """deploy/compose.env.example with a value in each variable."""
    names = load_dotenv(DEPLOY / "compose.env.example")
    assert names, "deploy/compose.env.example names no variable"
    return {name: f"example{name.lower().replace('_', '')}" for name in names}


@pytest.fixture(scope="module")
def compose(compose_env: dict[str, str]) -> dict[str, Any]:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    unknown = sorted(set(_INTERPOLATION.findall(text)) - set(compose_env))
    assert not unknown, f"compose.yaml uses variables deploy/compose.env.example does not name: {unknown}"
    return yaml.safe_load(_interpolated(text, compose_env))


def _ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == IMAGE}


def _command(service: dict[str, Any]) -> str | None:
    """The subcommand of ``python -m bot`` a service runs (None: the bot itself)."""
    command = service.get("command")
    assert command is None or command[:3] == ["python", "-m", "bot"], command
    return command[3] if command else None


def _bots(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in _ours(compose).items() if _command(s) is None}


def _settings(service: dict[str, Any], tmp_path: Path) -> Settings:
    """The service's settings, as the bot would read them in its container."""
    environ = dict(load_dotenv(DEPLOY / ".env.example")) if service.get("env_file") == ".env" else {}
    environ.update({k: str(v) for k, v in service.get("environment", {}).items()})
    if "DISCORD_TOKEN" in environ:
        environ["DISCORD_TOKEN"] = _TOKEN
    environ["RECORDINGS_DIR"] = str(tmp_path / "recordings")  # the container's path is not on this machine
    return Settings.from_env(environ, dotenv_path=None, need_token=_command(service) != "web")


def test_the_services_are_the_multi_machine_setup(compose: dict[str, Any]) -> None:
    ours = _ours(compose)
    assert sorted(_command(s) or "bot" for s in ours.values()) == ["bot", "bot", "sync-commands", "web"]
    assert {"postgres", "minio", "bucket"} <= set(compose["services"])
    assert "HEALTHCHECK" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for name, service in ours.items():  # the image's HEALTHCHECK watches every long-running one
        assert service.get("healthcheck", {}).get("disable", False) == (_command(service) == "sync-commands"), name


def test_every_variable_set_is_a_setting_or_an_aws_credential(compose: dict[str, Any], tmp_path: Path) -> None:
    known = {v.name for v in VARIABLES} | AWS_CHAIN
    for name, service in _ours(compose).items():
        unknown = sorted(set(service.get("environment", {})) - known)
        assert not unknown, f"{name} sets variables that are no setting: {unknown}"
        _settings(service, tmp_path)  # a bad value raises ConfigError naming it


def test_the_bots_shards_are_disjoint_cover_the_count_and_are_those_the_test_runs(
        compose: dict[str, Any], tmp_path: Path) -> None:
    settings = {name: _settings(s, tmp_path) for name, s in _bots(compose).items()}
    counts = {s.shard_count for s in settings.values()}
    assert len(counts) == 1 and None not in counts, counts
    (count,) = counts
    shards = [set(s.shard_ids or ()) for s in settings.values()]
    assert all(shards) and sum(len(ids) for ids in shards) == len(set().union(*shards)), f"overlap: {shards}"
    assert set().union(*shards) == set(range(count))
    tested_count, tested_ids = SHARDS["before"]
    assert count == int(tested_count)
    assert sorted(sorted(ids) for ids in shards) == sorted(
        sorted(int(i) for i in ids.split(",")) for ids in tested_ids.values())


def test_bots_and_front_share_index_and_store_and_commands_are_synced_once(compose: dict[str, Any]) -> None:
    ours, bots = _ours(compose), _bots(compose)
    (front,) = [s for s in ours.values() if _command(s) == "web"]
    shared = ("DATABASE_URL", "STORAGE_URL", "STORAGE_ENDPOINT", "STORAGE_REGION", *sorted(AWS_CHAIN))
    for name in shared:
        assert len({str(s["environment"][name]) for s in [*bots.values(), front]}) == 1, name
    environment = front["environment"]
    database = re.fullmatch(r"postgresql://([^:]+):[^@]+@([^:/]+):5432/(\w+)", environment["DATABASE_URL"])
    assert database, environment["DATABASE_URL"]
    postgres = compose["services"]["postgres"]["environment"]
    assert (database[1], database[2], database[3]) == (postgres["POSTGRES_USER"], "postgres", postgres["POSTGRES_DB"])
    bucket = re.fullmatch(r"s3://([a-z0-9.-]+)/.*", environment["STORAGE_URL"])
    assert bucket and f"mc mb --ignore-existing local/{bucket[1]}" in " ".join(compose["services"]["bucket"]["command"])
    assert environment["STORAGE_ENDPOINT"] == "http://minio:9000"
    assert "DISCORD_TOKEN" not in environment and "env_file" not in front, "the front needs no token"

    (sync_name,) = [n for n, s in ours.items() if _command(s) == "sync-commands"]
    volumes = []
    for name, bot in bots.items():
        assert bot["environment"]["SYNC_COMMANDS"] == "no", name
        assert bot["depends_on"][sync_name]["condition"] == "service_completed_successfully", name
        (volume,) = bot["volumes"]
        assert volume.endswith(":" + bot["environment"]["RECORDINGS_DIR"]), volume
        volumes.append(volume.split(":")[0])
    assert len(set(volumes)) == len(bots), f"bots share a recordings volume: {volumes}"
    assert set(volumes) <= set(compose["volumes"])
