"""No password or private key shows in a log line, an error message, a repr or a committed file."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from bus import BusSettings
from bus.access.credentials import ClientConfig, CredentialStore
from tests.conftest import REPO
from tests.integration.fanout_support import agreements_keys
from tests.integration.secure.conftest import SecureEnv

WRONG = f"wrong-{secrets.token_hex(12)}"  # made at run time: not in any committed file


def secrets_of(env: SecureEnv) -> dict[str, str]:
    """Every password and private key this session created, by where it came from."""
    found: dict[str, str] = {}
    stores = (CredentialStore(env.broker.admin_config.parent),
              CredentialStore(env.admin.credentials_dir))  # fmt: skip
    for store in stores:
        for principal in store.principals():
            password = store.load(principal).password
            assert password is not None
            found[f"password of {principal}"] = password.get_secret_value()
    data = env.broker.data_dir
    server = (data / "server.properties").read_text()
    for n, match in enumerate(re.finditer(r'password="([^"]+)"', server)):
        found[f"server.properties password {n}"] = match.group(1)
    for pem in (data / "tls" / "ca.key", data / "tls" / "broker.pem"):
        body = pem.read_text().split("-----BEGIN PRIVATE KEY-----")[1].split("-----END")[0]
        for n, line in enumerate(body.split()):
            if len(line) >= 40:
                found[f"{pem.name} key line {n}"] = line
    found["a wrong password"] = WRONG
    assert len(found) > 30
    return found


def run_cli(env: SecureEnv, *args: str, **extra: str) -> str:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BUS_")},
        **env.broker.env,
        "BUS_CREDENTIALS_DIR": str(env.admin.credentials_dir),
        "BUS_TOPIC_PREFIX": env.prefix,
        "BUS_KEYS_DIR": str(env.admin.keys_dir),
        "BUS_LOG_FORMAT": "json",
        "BUS_LOG_LEVEL": "DEBUG",
        **extra,
    }
    proc = subprocess.run([sys.executable, "-m", "bus", *args], env=environ, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    return f"$ bus {' '.join(args)} (exit {proc.returncode})\n{proc.stdout}{proc.stderr}"


async def test_no_secret_in_outputs_logs_errors_reprs_or_committed_files(
    secure_env: SecureEnv, keys_dir: Path, tmp_path: Path
) -> None:
    env = secure_env
    agreements_keys(keys_dir, env.agreements)
    outputs = [env.broker.start_output]
    commands = [
        ("access", "apply", "--dry-run"),
        ("access", "apply"),
        ("access", "kit", "europol", "--out", str(tmp_path / "kit")),
        ("kafka", "status"),
        ("topics", "apply"),
    ]
    for args in commands:
        outputs.append(await asyncio.to_thread(run_cli, env, *args))
    assert "exit 0" in outputs[-1]
    europol = str(env.credentials("europol"))
    failing = [
        ("tail", env.admin.topics.audit, "--from-beginning", "--max", "1"),  # no ACL
        ("audit", "verify"),  # no ACL
    ]
    for args in failing:
        outputs.append(await asyncio.to_thread(run_cli, env, *args, BUS_CLIENT_CONFIG=europol))
    outputs.append(
        await asyncio.to_thread(run_cli, env, "topics", "apply", BUS_SASL_PASSWORD=WRONG)
    )
    assert "authentication failed" in outputs[-1]
    assert "Kafka denied principal" in outputs[-2]
    assert "Kafka denied principal" in outputs[-3]

    settings = BusSettings(client_config=env.credentials("mk"))
    outputs += [repr(settings), str(settings), repr(settings.model_dump()),
                repr(ClientConfig.load(env.credentials("mk"))),
                repr(settings.model_copy(update={"sasl_password": SecretStr(WRONG)}))]  # fmt: skip
    outputs.append((env.broker.data_dir / "broker.log").read_text(errors="replace"))

    secrets = secrets_of(env)
    everything = "\n".join(outputs)
    for where, secret in secrets.items():
        assert secret not in everything, f"{where} leaked"

    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, tracked):
        path = REPO / name
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            for where, secret in secrets.items():
                assert secret not in text, f"{where} is in the committed file {name}"


SMALL_AGREEMENTS = """\
partners:
  mk: {name: "North Macedonia", country: mk, public_key: mk.pub}
  europol: {name: "Europol", country: null, public_key: null}
agreements:
  - id: mk-europol
    title: "Crossings to Europol"
    legal_basis: "test"
    origins: [mk]
    recipients: [europol]
    types: [irregular-crossing]
    max_tlp: AMBER
    redact: []
    valid_from: 2012-01-01
    valid_until: null
"""


async def test_access_apply_prints_its_changes_dry_run_changes_nothing_and_again_is_a_no_op(
    secure_env: SecureEnv, tmp_path: Path
) -> None:
    env = secure_env
    small = tmp_path / "agreements.yaml"
    small.write_text(SMALL_AGREEMENTS)
    first = await asyncio.to_thread(run_cli, env, "access", "apply", "--dry-run",
                                    BUS_AGREEMENTS=str(small))  # fmt: skip
    second = await asyncio.to_thread(run_cli, env, "access", "apply", "--dry-run",
                                     BUS_AGREEMENTS=str(small))  # fmt: skip
    gone = env.principal("frontex")
    assert f"would - user {gone}" in first
    assert f"would - acl  {gone}: READ topic starting with '{env.prefix}partner.frontex.'" in first
    assert "Dry run: nothing changed." in first
    assert first.splitlines()[1:] == second.splitlines()[1:]  # nothing changed in between

    applied = await asyncio.to_thread(run_cli, env, "access", "apply", BUS_AGREEMENTS=str(small))
    lines = [line for line in applied.splitlines() if line.startswith(("+", "-", "~"))]
    assert lines == [line.removeprefix("would ") for line in first.splitlines()
                     if line.startswith("would ")]  # fmt: skip
    assert lines.index(f"- user {gone}") > max(
        i for i, line in enumerate(lines) if line.startswith(f"- acl  {gone}:")
    )
    again = await asyncio.to_thread(run_cli, env, "access", "apply", BUS_AGREEMENTS=str(small))
    assert "Nothing to change: 4 principal(s)" in again  # mk, europol, fanout, index
    assert not [line for line in again.splitlines() if line.startswith(("+", "-", "~"))]
