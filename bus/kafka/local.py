"""A local single-node Apache Kafka (KRaft), run from Maven-fetched jars: no Docker needed.

    broker = LocalKafka(BusSettings())
    broker.start()        # fetches the jars once, formats storage once, waits until ready
    broker.status()
    broker.stop()

The jars live in a cache outside the repository (``BUS_KAFKA_CACHE_DIR``), the log data in
``BUS_KAFKA_DATA_DIR``; both survive stop and start. Starting a running broker is harmless.
With ``BUS_KAFKA_SECURE`` the broker takes SASL_SSL logins only and enforces ACLs
(``bus.kafka.secure``); a data directory keeps the mode it was formatted in.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bus.access.files import write_private
from bus.errors import KafkaLocalError
from bus.kafka.secure import SecureBroker
from bus.settings import BusSettings

_HERE = Path(__file__).resolve().parent
_POM = _HERE / "pom.xml"
_LOG4J = _HERE / "log4j2.properties"
_MIN_JAVA = 17

_NO_TOOLS = (
    "The local Kafka broker needs {missing}. Either install Java {min_java}+ and Maven "
    "(e.g. `apt install openjdk-17-jre-headless maven`) and run `bus kafka start` again, "
    "or, with Docker, run `docker compose up -d` and keep BUS_BOOTSTRAP_SERVERS=127.0.0.1:9092."
)


@dataclass(frozen=True)
class BrokerStatus:
    """What ``bus kafka status`` reports."""

    running: bool
    pid: int | None
    bootstrap_servers: str
    data_dir: Path
    version: str
    secure: bool = False
    #: The administrator's client.properties (``BUS_CLIENT_CONFIG``) of a secure broker.
    client_config: Path | None = None


class LocalKafka:
    """Fetch, format, start, stop and inspect one local KRaft broker (broker and controller)."""

    def __init__(self, settings: BusSettings) -> None:
        self._settings = settings
        self.version = settings.kafka_version
        self.libs_dir = settings.kafka_cache_dir / f"kafka-{self.version}" / "libs"
        self.data_dir = settings.kafka_data_dir
        self.port = settings.kafka_port
        self.controller_port = settings.kafka_controller_port
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self.secure = settings.kafka_secure
        self._secure = SecureBroker(self.data_dir, settings.credentials_dir, self.bootstrap_servers)

    # -- paths -----------------------------------------------------------------------------

    @property
    def _pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def _config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def _log_dirs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def _mode_file(self) -> Path:
        return self.data_dir / "security"

    # -- public operations -------------------------------------------------------------------

    def ensure_jars(self) -> Path:
        """Fetch the pinned Kafka jars through Maven unless they are already in the cache."""
        marker = self.libs_dir / ".complete"
        if marker.exists():
            return self.libs_dir
        self._java()  # fails first, with the message naming both ways to get a broker
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaLocalError(_NO_TOOLS.format(missing="Maven (mvn)", min_java=_MIN_JAVA))
        tmp = self.libs_dir.with_name("libs.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            mvn, "-q", "-B", "-f", str(_POM), "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
            f"-Dkafka.version={self.version}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip()[-2000:]
            raise KafkaLocalError(
                f"Maven could not fetch org.apache.kafka:kafka_2.13:{self.version} "
                f"(exit {proc.returncode}). Check access to Maven Central.\n{tail}"
            )
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        tmp.rename(self.libs_dir)
        marker.write_text(self.version)
        return self.libs_dir

    def start(self) -> BrokerStatus:
        """Start the broker unless it runs already; return once clients can connect."""
        self._check_mode()
        current = self.status()
        if current.running:
            return current
        self.check_port_free()
        self.ensure_jars()
        java = self._java()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.secure:
            self._secure.prepare()
        self._write_config()
        self._format_once(java)
        if self.secure:
            self._secure.admin_config(formatting=False)  # the port may have changed
        proc, log_offset = self._launch(java)
        self._wait_ready(proc, log_offset)
        return self.status()

    def check_port_free(self) -> None:
        """Fail, naming the port and the setting, when another process holds the client port."""
        if _port_open(self.port):
            raise KafkaLocalError(
                f"Port {self.port} is taken by another process, not by the broker in "
                f"{self.data_dir}. Stop it, or set BUS_KAFKA_PORT to a free port."
            )

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout_s``). True if it ran."""
        pid = self._read_pid()
        if pid is None or not _alive(pid):
            self._pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self._pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> BrokerStatus:
        pid = self._read_pid()
        running = pid is not None and _alive(pid) and _port_open(self.port)
        secure = self._formatted_mode() == "secure"
        return BrokerStatus(
            running=running,
            pid=pid if running else None,
            bootstrap_servers=self.bootstrap_servers,
            data_dir=self.data_dir,
            version=self.version,
            secure=secure,
            client_config=self._secure.admin_config_file if secure else None,
        )

    # -- internals ---------------------------------------------------------------------------

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java or not Path(java).exists():
            raise KafkaLocalError(_NO_TOOLS.format(missing="Java", min_java=_MIN_JAVA))
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
        match = re.search(r'version "(\d+)', out.stderr + out.stdout)
        major = int(match.group(1)) if match else 0
        if major < _MIN_JAVA:
            raise KafkaLocalError(
                _NO_TOOLS.format(
                    missing=f"Java {_MIN_JAVA}+ (found {major or 'unknown'})", min_java=_MIN_JAVA
                )
            )
        return java

    def _java_cmd(self, java: str) -> list[str]:
        heap = self._settings.kafka_heap_mb
        return [
            java, f"-Xmx{heap}m", f"-Xms{min(heap, 256)}m", "-XX:+UseG1GC",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={_LOG4J}",
            "-cp", str(self.libs_dir / "*"),
        ]  # fmt: skip

    def _formatted_mode(self) -> str | None:
        if not (self._log_dirs / "meta.properties").exists():
            return None
        try:
            return self._mode_file.read_text().strip()
        except FileNotFoundError:
            return "plain"  # formatted before brokers could be secure

    def _check_mode(self) -> None:
        formatted = self._formatted_mode()
        wanted = "secure" if self.secure else "plain"
        if formatted not in (None, wanted):
            raise KafkaLocalError(
                f"The broker data in {self.data_dir} was formatted {formatted}, and this start "
                f"asks for a {wanted} broker. Use another BUS_KAFKA_DATA_DIR (and BUS_KAFKA_PORT "
                f"if the other broker runs), or delete {self.data_dir} to start afresh."
            )

    def _properties(self) -> dict[str, str]:
        """The broker's server.properties, as a mapping (a cluster node adds its own)."""
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self._log_dirs),
            "num.partitions": str(self._settings.topic_partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.check.interval.ms": "60000",
        }
        if self.secure:
            props |= self._secure.properties(self.port, self.controller_port)
        return props

    def _write_config(self) -> None:
        props = self._properties()
        text = "".join(f"{k}={v}\n" for k, v in props.items())
        if self.secure:  # it holds the broker's own passwords
            write_private(self._config_file, text.encode())
        else:
            self._config_file.write_text(text)

    def _format_once(self, java: str, cluster_id: str | None = None) -> None:
        """Format the storage unless it is; the nodes of one cluster share ``cluster_id``."""
        if (self._log_dirs / "meta.properties").exists():
            return
        cluster_id = cluster_id or _kafka_cluster_id()
        extra = self._format_args() if self.secure else []
        proc = subprocess.run(
            [*self._java_cmd(java), "kafka.tools.StorageTool", "format",
             "-t", cluster_id, "-c", str(self._config_file), *extra],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise KafkaLocalError(
                f"Formatting Kafka storage in {self._log_dirs} failed: "
                f"{(proc.stdout + proc.stderr).strip()[-1000:]}"
            )
        self._mode_file.write_text("secure\n" if self.secure else "plain\n")

    def _format_args(self) -> list[str]:
        """The secure broker's ``kafka-storage format`` arguments: its first SCRAM users."""
        return self._secure.format_args(self._secure.admin_config(formatting=True))

    def _launch(self, java: str) -> tuple[subprocess.Popen[bytes], int]:
        """Start the JVM in its own session; return it and where this start's log begins."""
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [*self._java_cmd(java), "kafka.Kafka", str(self._config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it
            )
        self._pid_file.write_text(str(proc.pid))
        return proc, log_offset

    def _wait_ready(self, proc: subprocess.Popen[bytes], log_offset: int) -> None:
        deadline = time.monotonic() + self._settings.kafka_start_timeout_ms / 1000
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._pid_file.unlink(missing_ok=True)
                raise KafkaLocalError(
                    f"The Kafka broker exited with code {proc.returncode} during start-up. "
                    f"Last lines of {self.log_file}:\n{self._log_tail()}"
                )
            if _port_open(self.port) and self._server_started(log_offset):
                return
            time.sleep(0.25)
        proc.terminate()
        raise KafkaLocalError(
            f"The Kafka broker did not become ready within "
            f"{self._settings.kafka_start_timeout_ms} ms. Last lines of {self.log_file}:\n"
            f"{self._log_tail()}"
        )

    def _server_started(self, log_offset: int) -> bool:
        # The broker logs this line once its listeners accept client requests; only lines
        # written since this start count (the log is appended to across restarts).
        try:
            with self.log_file.open("rb") as f:
                f.seek(log_offset)
                return b"Kafka Server started" in f.read()
        except OSError:
            return False

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _read_pid(self) -> int | None:
        try:
            return int(self._pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


def _kafka_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as StorageTool).

    Never one that starts with '-', which the storage tool would read as an option (Kafka's
    own ``Uuid.randomUuid`` draws again for the same reason): one start in 64 failed so.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers signal 0; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
