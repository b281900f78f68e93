"""Real Kafka (KRaft), InfluxDB and Mosquitto for development, tests and the demo, run by the project itself.

``vigil services up`` resolves Apache Kafka's jars from Maven Central into a cache (once), formats KRaft
storage, and starts one broker+controller on loopback; installs Debian's ``influxdb`` and ``mosquitto`` if they
are missing and starts them with project configuration under a state folder. Up is idempotent, ``down`` stops
what ``up`` started (whole process groups, then checks the ports are closed), and both print the connection
settings as environment variables, also written to ``<state>/services.env``.

Where a Docker engine exists, ``docker-compose.yml`` provides the same services instead.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vigil.exceptions import ServiceError

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
INFLUX_COMPAT_VERSION = "1.8.10"
SERVICES = ("kafka", "influxdb", "mosquitto")
"""Started by default. ``influxdb-v2api`` (InfluxDB 1.8 built from source: the v2 write/Flux API for the tests of
the influxdb-client path) only when asked for by name; the test command asks for it."""
ALL_SERVICES = (*SERVICES, "influxdb-v2api")


def _default_state_dir() -> Path:
    return Path(os.environ.get("VIGIL_STATE_DIR", Path.cwd() / ".vigil")).resolve()


def _default_cache_dir() -> Path:
    base = os.environ.get("VIGIL_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vigil"


@dataclass(frozen=True)
class ServicesConfig:
    """Where the managed services live and listen. Ports are loopback-only."""

    state_dir: Path = field(default_factory=_default_state_dir)
    cache_dir: Path = field(default_factory=_default_cache_dir)
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "768m"
    influx_port: int = 18086
    influx_rpc_port: int = 18088
    influx_database: str = "vigil"
    influx_v2_port: int = 18087
    influx_v2_rpc_port: int = 18089
    mqtt_port: int = 11883
    host: str = "127.0.0.1"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def influx_url(self) -> str:
        return f"http://{self.host}:{self.influx_port}"

    def env(self) -> dict[str, str]:
        """Connection settings, named as the plant configuration's environment overrides."""
        return {
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "VIGIL_INFLUX__URL": self.influx_url,
            "VIGIL_INFLUX__DATABASE": self.influx_database,
            "VIGIL_INFLUX__API": "v1",
            "VIGIL_MQTT__HOST": self.host,
            "VIGIL_MQTT__PORT": str(self.mqtt_port),
            # Not a plant setting (one underscore): where the tests find the v2-API server, if started.
            "VIGIL_INFLUX_V2_URL": f"http://{self.host}:{self.influx_v2_port}",
        }


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id: 16 random bytes in unpadded URL-safe base64, never starting with ``-``.

    ``kafka-storage format -t -Abc...`` reads an id that starts with ``-`` as an option and fails, so such an id
    (one in 64) is drawn again, as Kafka's own ``Uuid.randomUuid`` does.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _wait(what: str, check: Callable[[], bool], timeout: float, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    tail = ""
    if log_file is not None and log_file.exists():
        tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
    raise ServiceError(f"{what} did not become ready within {timeout:.0f}s{tail}")


def _apt_install(package: str, binary: str) -> str:
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise ServiceError(f"{binary} is not installed and apt-get is not available; install {package!r}")
    log.info("installing Debian package %s", package)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, stdout=subprocess.DEVNULL)
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if result.returncode != 0 or not found:
        raise ServiceError(f"could not install {package}: {result.stderr[-2000:]}")
    # Debian's post-install may start a system instance on the default ports; ours uses its own.
    return found


def _start_detached(cmd: list[str], log_file: Path, pid_file: Path, cwd: Path) -> int:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def _stop_pid(name: str, pid_file: Path, timeout: float = 30.0) -> bool:
    pid = _read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    log.info("stopping %s (pid %d)", name, pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _read_pid(pid_file) is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _read_pid(pid_file) is not None:
        log.warning("%s did not stop within %.0fs; killing it", name, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.5)
    pid_file.unlink(missing_ok=True)
    return True


class Kafka:
    """A single-node Apache Kafka 4.x broker+controller in KRaft mode, from Maven Central jars."""

    name = "kafka"

    def __init__(self, cfg: ServicesConfig) -> None:
        self.cfg = cfg
        self.home = cfg.state_dir / "kafka"
        self.libs = cfg.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
        self.pid_file = self.home / "kafka.pid"
        self.log_file = self.home / "kafka.out"

    def _resolve_jars(self) -> None:
        marker = self.libs / ".complete"
        if marker.exists():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError("Maven (mvn) is needed once to fetch Kafka's jars from Maven Central")
        pom = Path(__file__).resolve().parent / "data" / "kafka-pom.xml"
        build = self.libs.parent / "build"
        build.mkdir(parents=True, exist_ok=True)
        text = pom.read_text().replace("@KAFKA_VERSION@", KAFKA_VERSION).replace("@LOG4J_VERSION@", LOG4J_VERSION)
        (build / "pom.xml").write_text(text)
        log.info("resolving org.apache.kafka:kafka_2.13:%s and dependencies with Maven", KAFKA_VERSION)
        result = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={self.libs}"],
            cwd=build,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"Maven could not resolve Kafka {KAFKA_VERSION}: {result.stdout[-3000:]}")
        marker.write_text(KAFKA_VERSION)

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("Java 17+ is needed to run the Kafka broker")
        return java

    def _write_config(self) -> Path:
        data = self.home / "data"
        props = self.home / "server.properties"
        c = self.cfg
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{c.host}:{c.kafka_controller_port}",
                    f"listeners=PLAINTEXT://{c.host}:{c.kafka_port},CONTROLLER://{c.host}:{c.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://{c.host}:{c.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=4",
                    "auto.create.topics.enable=true",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "log.segment.bytes=67108864",
                    "",
                ]
            )
        )
        (self.home / "log4j2.yaml").write_text(
            "Configuration:\n"
            "  Appenders:\n"
            "    File:\n"
            "      name: F\n"
            f"      fileName: {self.home / 'server.log'}\n"
            '      PatternLayout: {pattern: "[%d] %p %m (%c)%n"}\n'
            "  Loggers:\n"
            "    Root: {level: INFO, AppenderRef: [{ref: F}]}\n"
        )
        return props

    def _classpath(self) -> str:
        return str(self.libs / "*")

    def running(self) -> bool:
        return _read_pid(self.pid_file) is not None

    def ready(self) -> bool:
        if not _port_open(self.cfg.host, self.cfg.kafka_port):
            return False
        try:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=self.cfg.kafka_bootstrap, request_timeout_ms=5000)
            try:
                admin.list_topics()
            finally:
                admin.close()
        except Exception:
            return False
        return True

    def up(self) -> None:
        self._resolve_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        if self.running():
            _wait("Kafka", self.ready, 60, self.log_file)
            return
        if _port_open(self.cfg.host, self.cfg.kafka_port):
            raise ServiceError(f"port {self.cfg.kafka_port} is taken by a process this state folder did not start")
        java = self._java()
        log4j = f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}"
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = new_cluster_id()
            result = subprocess.run(
                [
                    java,
                    "-cp",
                    self._classpath(),
                    log4j,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ServiceError(f"formatting KRaft storage failed: {result.stdout}{result.stderr}")
        _start_detached(
            [
                java,
                "-Xms256m",
                f"-Xmx{self.cfg.kafka_heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                log4j,
                "-cp",
                self._classpath(),
                "kafka.Kafka",
                str(props),
            ],
            self.log_file,
            self.pid_file,
            self.home,
        )
        _wait("Kafka", self.ready, 90, self.home / "server.log")

    def down(self) -> bool:
        return _stop_pid("Kafka", self.pid_file, timeout=45)

    def status(self) -> str:
        return _describe(self.running(), self.ready() if self.running() else False, self.cfg.kafka_bootstrap)


class InfluxDB:
    """Debian's InfluxDB 1.x server (v1 HTTP API) with its data under the state folder."""

    name = "influxdb"

    def __init__(self, cfg: ServicesConfig) -> None:
        self.cfg = cfg
        self.home = cfg.state_dir / "influxdb"
        self.pid_file = self.home / "influxd.pid"
        self.log_file = self.home / "influxd.log"

    def running(self) -> bool:
        return _read_pid(self.pid_file) is not None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.cfg.influx_url}/ping", timeout=2) as resp:
                return bool(resp.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def _write_config(self) -> Path:
        h = self.home
        conf = h / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "{self.cfg.host}:{self.cfg.influx_rpc_port}"\n'
            f'[meta]\n  dir = "{h / "meta"}"\n'
            f'[data]\n  dir = "{h / "data"}"\n  wal-dir = "{h / "wal"}"\n  query-log-enabled = false\n'
            '  index-version = "inmem"\n'
            f'[http]\n  enabled = true\n  bind-address = "{self.cfg.host}:{self.cfg.influx_port}"\n'
            "  log-enabled = false\n  max-body-size = 0\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )
        return conf

    def up(self) -> None:
        influxd = _apt_install("influxdb", "influxd")
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        if not self.running():
            if _port_open(self.cfg.host, self.cfg.influx_port):
                raise ServiceError(f"port {self.cfg.influx_port} is taken by a process this state folder did not start")
            _start_detached([influxd, "-config", str(conf)], self.log_file, self.pid_file, self.home)
        _wait("InfluxDB", self.ready, 60, self.log_file)
        body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{self.cfg.influx_database}"'}).encode()
        with urllib.request.urlopen(f"{self.cfg.influx_url}/query", data=body, timeout=10) as resp:
            resp.read()

    def down(self) -> bool:
        return _stop_pid("InfluxDB", self.pid_file)

    def status(self) -> str:
        return _describe(self.running(), self.ready(), self.cfg.influx_url)


class InfluxDBV2Api(InfluxDB):
    """InfluxDB 1.8 with Flux enabled: the v2 HTTP API (``/api/v2/write``, ``/api/v2/query``) that
    influxdb-client speaks, on a machine without a Docker engine for InfluxDB 2.x.

    Debian ships 1.6, which predates that API, and no 1.8 or 2.x binary is packaged for this machine's
    registries; 1.8 is pure Go, so ``go install`` builds it from the Go module proxy into the cache once
    (~4 minutes, ~460 MB of modules). InfluxDB 2.x itself needs Rust-built Flux and is tested with
    testcontainers where Docker runs.
    """

    name = "influxdb-v2api"

    def __init__(self, cfg: ServicesConfig) -> None:
        super().__init__(cfg)
        self.home = cfg.state_dir / "influxdb-v2api"
        self.pid_file = self.home / "influxd.pid"
        self.log_file = self.home / "influxd.log"
        self.url = f"http://{cfg.host}:{cfg.influx_v2_port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as resp:
                return bool(resp.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def _binary(self) -> str:
        root = self.cfg.cache_dir / f"influxdb-{INFLUX_COMPAT_VERSION}"
        binary = root / "bin" / "influxd"
        if binary.exists():
            return str(binary)
        go = shutil.which("go")
        if go is None:
            raise ServiceError("influxdb-v2api: building InfluxDB 1.8 needs Go (`go` on PATH)")
        root.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GOBIN": str(root / "bin"),
            "GOPATH": str(root / "gopath"),
            "GOFLAGS": "-mod=mod -modcacherw",
            "CGO_ENABLED": "0",
        }
        log.info("building InfluxDB %s with go install (once; a few minutes)", INFLUX_COMPAT_VERSION)
        build_log = root / "build.log"
        with build_log.open("w") as out:
            done = subprocess.run(
                [go, "install", f"github.com/influxdata/influxdb/cmd/influxd@v{INFLUX_COMPAT_VERSION}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=root,
                timeout=1800,
                check=False,
            )
        if done.returncode != 0 or not binary.exists():
            tail = build_log.read_text(errors="replace")[-2000:]
            raise ServiceError(f"influxdb-v2api: go install failed ({done.returncode}):\n{tail}")
        # The module cache is only needed to build; keep the binary.
        shutil.rmtree(root / "gopath", ignore_errors=True)
        return str(binary)

    def _write_config(self) -> Path:
        h, c = self.home, self.cfg
        conf = h / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "{c.host}:{c.influx_v2_rpc_port}"\n'
            f'[meta]\n  dir = "{h / "meta"}"\n'
            f'[data]\n  dir = "{h / "data"}"\n  wal-dir = "{h / "wal"}"\n  query-log-enabled = false\n'
            f'[http]\n  enabled = true\n  bind-address = "{c.host}:{c.influx_v2_port}"\n'
            "  log-enabled = false\n  flux-enabled = true\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )
        return conf

    def up(self) -> None:
        influxd = self._binary()
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        if not self.running():
            if _port_open(self.cfg.host, self.cfg.influx_v2_port):
                raise ServiceError(
                    f"port {self.cfg.influx_v2_port} is taken by a process this state folder did not start"
                )
            _start_detached([influxd, "-config", str(conf)], self.log_file, self.pid_file, self.home)
        _wait("InfluxDB 1.8 (v2 API)", self.ready, 60, self.log_file)

    def status(self) -> str:
        return _describe(self.running(), self.ready(), self.url)


class Mosquitto:
    """Debian's Mosquitto MQTT broker on a loopback port (for the MQTT collector)."""

    name = "mosquitto"

    def __init__(self, cfg: ServicesConfig) -> None:
        self.cfg = cfg
        self.home = cfg.state_dir / "mosquitto"
        self.pid_file = self.home / "mosquitto.pid"
        self.log_file = self.home / "mosquitto.log"

    def running(self) -> bool:
        return _read_pid(self.pid_file) is not None

    def ready(self) -> bool:
        return _port_open(self.cfg.host, self.cfg.mqtt_port)

    def up(self) -> None:
        binary = _apt_install("mosquitto", "mosquitto")
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self.home / "mosquitto.conf"
        conf.write_text(
            f"listener {self.cfg.mqtt_port} {self.cfg.host}\nallow_anonymous true\npersistence false\nlog_dest stdout\n"
        )
        if not self.running():
            if _port_open(self.cfg.host, self.cfg.mqtt_port):
                raise ServiceError(f"port {self.cfg.mqtt_port} is taken by a process this state folder did not start")
            _start_detached([binary, "-c", str(conf)], self.log_file, self.pid_file, self.home)
        _wait("Mosquitto", self.ready, 20, self.log_file)

    def down(self) -> bool:
        return _stop_pid("Mosquitto", self.pid_file)

    def status(self) -> str:
        return _describe(self.running(), self.ready(), f"{self.cfg.host}:{self.cfg.mqtt_port}")


def _describe(running: bool, ready: bool, where: str) -> str:
    if ready:
        return f"ready at {where}"
    if running:
        return f"started, not answering at {where}"
    return "stopped"


def managed(cfg: ServicesConfig, names: tuple[str, ...] = SERVICES) -> list[Kafka | InfluxDB | Mosquitto]:
    registry: dict[str, type[Kafka | InfluxDB | Mosquitto]] = {
        "kafka": Kafka,
        "influxdb": InfluxDB,
        "influxdb-v2api": InfluxDBV2Api,
        "mosquitto": Mosquitto,
    }
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ServiceError(f"unknown service(s) {unknown}; choose from {list(registry)}")
    return [registry[n](cfg) for n in names]


def env_lines(cfg: ServicesConfig) -> list[str]:
    return [f"export {k}={v}" for k, v in cfg.env().items()]


def up(cfg: ServicesConfig, names: tuple[str, ...] = SERVICES) -> None:
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    for svc in managed(cfg, names):
        started = time.monotonic()
        svc.up()
        log.info("%s ready in %.1fs", svc.name, time.monotonic() - started)
    (cfg.state_dir / "services.env").write_text("\n".join(env_lines(cfg)) + "\n")


def down(cfg: ServicesConfig, names: tuple[str, ...] = ALL_SERVICES) -> None:
    """Stop what this state folder started; the ports of what was running must be closed afterwards."""
    ports = {
        "kafka": [cfg.kafka_port, cfg.kafka_controller_port],
        "influxdb": [cfg.influx_port],
        "influxdb-v2api": [cfg.influx_v2_port],
        "mosquitto": [cfg.mqtt_port],
    }
    stopped: list[str] = []
    for svc in reversed(managed(cfg, names)):
        if svc.running():
            stopped.append(svc.name)
        svc.down()
    # Only ports of services this folder had started: another instance may own a default port.
    still = [p for n in stopped for p in ports[n] if _port_open(cfg.host, p)]
    if still:
        raise ServiceError(f"ports still listening after down: {still}")


def main(argv: list[str]) -> int:
    """``vigil services up|down|status|env [service ...]``"""
    import argparse

    parser = argparse.ArgumentParser(prog="vigil services", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("action", choices=["up", "down", "status", "env"])
    parser.add_argument(
        "services",
        nargs="*",
        help=f"{' | '.join(ALL_SERVICES)}; default for up: {' '.join(SERVICES)}, for down/status/env: all",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="the secured stack instead (TLS + SASL Kafka with ACLs, HTTPS + auth InfluxDB, TLS + password "
        "Mosquitto) on its own ports; see docs/security.md",
    )
    args = parser.parse_args(argv)
    cfg = ServicesConfig()
    if args.secure:
        return _secure_main(args.action, cfg)
    names = tuple(args.services) or (SERVICES if args.action == "up" else ALL_SERVICES)
    try:
        if args.action == "up":
            up(cfg, names)
            print("\n".join(env_lines(cfg)))
        elif args.action == "down":
            down(cfg, names)
            print("stopped: " + ", ".join(names), file=sys.stderr)
        elif args.action == "env":
            print("\n".join(env_lines(cfg)))
        else:
            for svc in managed(cfg, names):
                print(f"{svc.name}: {svc.status()}")
    except ServiceError as exc:
        print(f"vigil services {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _secure_main(action: str, cfg: ServicesConfig) -> int:
    from vigil import services_secure

    sc = services_secure.SecureConfig(cfg)
    try:
        if action == "up":
            services_secure.up(sc)
        elif action == "down":
            services_secure.down(sc)
            print("stopped: the secured stack", file=sys.stderr)
            return 0
        elif action == "status":
            for svc in services_secure.secure_services(sc):
                print(f"{svc.name}: {svc.status()}")
            return 0
    except ServiceError as exc:
        print(f"vigil services {action} --secure: {exc}", file=sys.stderr)
        return 1
    # Settings for one service (features); the other services' users differ only in the Kafka user and file.
    print("\n".join(f"export {k}={v}" for k, v in sc.settings().items()))
    return 0
