"""The secured development stack: ``vigil services up --secure``.

Beside the plaintext services (their own ports and state folder, so both run at once): a private CA
(:mod:`vigil.pki`), Kafka with one SASL_SSL listener (SCRAM-SHA-512/256 users made at KRaft format time, PLAIN
for the same users, optional client certificates; the StandardAuthorizer with deny-by-default and per-service
ACLs from :mod:`vigil.acls`), InfluxDB 1.x with ``auth-enabled`` over HTTPS, and Mosquitto over TLS with a
password file. Secrets are random, written as ``0600`` files under ``<state>/secure/secrets``, and the settings
printed name the files (``*_file`` keys), never the values.
"""

from __future__ import annotations

import base64
import getpass
import json
import os
import secrets
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vigil.acls import KAFKA_SERVICES
from vigil.exceptions import ServiceError
from vigil.pki import CertificateAuthority
from vigil.services import (
    Kafka,
    ServicesConfig,
    _apt_install,
    _port_open,
    _read_pid,
    _start_detached,
    _stop_pid,
    _wait,
    new_cluster_id,
)

INFLUX_USERS = ("admin", "vigil")
"""``admin`` (all privileges: creates the database and users), ``vigil`` (read/write on the database only)."""
MQTT_USERS = ("collector", "device")
"""``collector`` subscribes (Vigil), ``device`` publishes (a stand-in for the plant's gateways)."""


@dataclass(frozen=True)
class SecureConfig:
    """Ports and folders of the secured stack (loopback only; none shared with the plaintext one)."""

    base: ServicesConfig
    kafka_port: int = 19194
    kafka_controller_port: int = 19195
    influx_port: int = 18096
    influx_rpc_port: int = 18098
    mqtt_port: int = 18883

    @property
    def home(self) -> Path:
        return self.base.state_dir / "secure"

    @property
    def pki(self) -> Path:
        return self.home / "pki"

    @property
    def secrets(self) -> Path:
        return self.home / "secrets"

    @property
    def host(self) -> str:
        return self.base.host

    def secret(self, name: str) -> Path:
        """The file holding secret ``name`` (made once, random, ``0600``)."""
        path = self.secrets / name
        if not path.exists():
            self.secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))
        return path

    def secret_value(self, name: str) -> str:
        return self.secret(name).read_text().strip()

    def ca(self) -> CertificateAuthority:
        return CertificateAuthority(self.pki)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki / "ca.crt"))

    def settings(self, service: str = "features") -> dict[str, str]:
        """The environment overrides of a Vigil ``service`` (its Kafka user) for this stack; secrets as files."""
        ca = str(self.pki / "ca.crt")
        return {
            "VIGIL_KAFKA__BOOTSTRAP_SERVERS": f"{self.host}:{self.kafka_port}",
            "VIGIL_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "VIGIL_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "VIGIL_KAFKA__SASL_USERNAME": service,
            "VIGIL_KAFKA__SASL_PASSWORD_FILE": str(self.secret(f"kafka-{service}")),
            "VIGIL_KAFKA__TLS__CA_FILE": ca,
            "VIGIL_INFLUX__URL": f"https://{self.host}:{self.influx_port}",
            "VIGIL_INFLUX__DATABASE": self.base.influx_database,
            "VIGIL_INFLUX__API": "v1",
            "VIGIL_INFLUX__USERNAME": "vigil",
            "VIGIL_INFLUX__PASSWORD_FILE": str(self.secret("influx-vigil")),
            "VIGIL_INFLUX__TLS__CA_FILE": ca,
            "VIGIL_MQTT__HOST": self.host,
            "VIGIL_MQTT__PORT": str(self.mqtt_port),
            "VIGIL_MQTT__USERNAME": "collector",
            "VIGIL_MQTT__PASSWORD_FILE": str(self.secret("mqtt-collector")),
            "VIGIL_MQTT__TLS__CA_FILE": ca,
        }


class SecureKafka(Kafka):
    """Kafka 4.x (KRaft) with a SASL_SSL listener, SCRAM users per Vigil service and deny-by-default ACLs.

    The controller listener stays PLAINTEXT on loopback (the broker reaches its own controller as ANONYMOUS, a
    super user there); clients have no use for it. Documented in docs/security.md.
    """

    name = "kafka-secure"

    def __init__(self, sc: SecureConfig) -> None:
        super().__init__(sc.base)
        self.sc = sc
        self.home = sc.home / "kafka"
        self.pid_file = self.home / "kafka.pid"
        self.log_file = self.home / "kafka.out"

    def _scram_users(self) -> list[str]:
        return ["admin", *KAFKA_SERVICES]

    def _write_config(self) -> Path:
        sc = self.sc
        issued = sc.ca().issue("kafka", hosts=("localhost", sc.host), folder=self.home / "tls")
        keystore = self.home / "tls" / "kafka.pem"
        # A PEM keystore: the (unencrypted PKCS#8) key and its certificate in one file.
        fd = os.open(keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(issued.key_file.read_text() + issued.cert_file.read_text())
        admin = sc.secret_value("kafka-admin")
        plain_users = " ".join(f'user_{u}="{sc.secret_value(f"kafka-{u}")}"' for u in self._scram_users())
        data = self.home / "data"
        props = self.home / "server.properties"
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{sc.host}:{sc.kafka_controller_port}",
            f"listeners=SASL_SSL://{sc.host}:{sc.kafka_port},CONTROLLER://{sc.host}:{sc.kafka_controller_port}",
            f"advertised.listeners=SASL_SSL://{sc.host}:{sc.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_SSL",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram."
            f'ScramLoginModule required username="admin" password="{admin}";',
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram."
            f'ScramLoginModule required username="admin" password="{admin}";',
            "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain."
            f'PlainLoginModule required username="admin" password="{admin}" {plain_users};',
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={sc.pki / 'ca.crt'}",
            "ssl.client.auth=requested",
            "ssl.endpoint.identification.algorithm=https",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            "super.users=User:admin;User:ANONYMOUS",
            f"log.dirs={data}",
            "num.partitions=4",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=24",
            "",
        ]
        fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines))
        (self.home / "log4j2.yaml").write_text(
            "Configuration:\n"
            "  Appenders:\n"
            "    File:\n"
            "      name: F\n"
            f"      fileName: {self.home / 'server.log'}\n"
            '      PatternLayout: {pattern: "[%d] %p %m (%c)%n"}\n'
            "  Loggers:\n"
            "    Root: {level: INFO, AppenderRef: [{ref: F}]}\n"
            "    Logger: [{name: kafka.authorizer.logger, level: WARN}]\n"
        )
        return props

    def admin_kwargs(self) -> dict[str, object]:
        return {
            "bootstrap_servers": f"{self.sc.host}:{self.sc.kafka_port}",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "admin",
            "sasl_plain_password": self.sc.secret_value("kafka-admin"),
            "ssl_context": self.sc.client_context(),
        }

    def ready(self) -> bool:
        if not _port_open(self.sc.host, self.sc.kafka_port):
            return False
        try:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(**self.admin_kwargs(), request_timeout_ms=5000)
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
            _wait("secure Kafka", self.ready, 60, self.home / "server.log")
            return
        if _port_open(self.sc.host, self.sc.kafka_port):
            raise ServiceError(f"port {self.sc.kafka_port} is taken by a process this state folder did not start")
        java = self._java()
        log4j = f"-Dlog4j2.configurationFile={self.home / 'log4j2.yaml'}"
        if not (self.home / "data" / "meta.properties").exists():
            scram: list[str] = []
            for user in self._scram_users():
                password = self.sc.secret_value(f"kafka-{user}")
                for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                    scram += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
            cmd = [java, "-cp", self._classpath(), log4j, "kafka.tools.StorageTool", "format"]
            cmd += ["-t", new_cluster_id(), "-c", str(props), *scram]
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                # The command line holds passwords: report the tool's output only.
                raise ServiceError(f"formatting KRaft storage (secure) failed: {result.stdout}{result.stderr}")
        cmd = [java, "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true", log4j]
        _start_detached(
            [*cmd, "-cp", self._classpath(), "kafka.Kafka", str(props)],
            self.log_file,
            self.pid_file,
            self.home,
        )
        _wait("secure Kafka", self.ready, 120, self.home / "server.log")

    def down(self) -> bool:
        return _stop_pid("secure Kafka", self.pid_file, timeout=45)

    def status(self) -> str:
        where = f"{self.sc.host}:{self.sc.kafka_port} (SASL_SSL)"
        ready = self.ready() if self.running() else False
        return f"ready at {where}" if ready else ("started, not answering" if self.running() else "stopped")


class SecureInflux:
    """InfluxDB 1.x with ``auth-enabled`` over HTTPS (a server certificate from the private CA)."""

    name = "influxdb-secure"

    def __init__(self, sc: SecureConfig) -> None:
        self.sc = sc
        self.home = sc.home / "influxdb"
        self.pid_file = self.home / "influxd.pid"
        self.log_file = self.home / "influxd.log"
        self.url = f"https://{sc.host}:{sc.influx_port}"

    def running(self) -> bool:
        return _read_pid(self.pid_file) is not None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=2, context=self.sc.client_context()) as resp:
                return bool(resp.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def _write_config(self) -> Path:
        h, sc = self.home, self.sc
        issued = sc.ca().issue("influxdb", hosts=("localhost", sc.host), folder=h / "tls")
        conf = h / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "{sc.host}:{sc.influx_rpc_port}"\n'
            f'[meta]\n  dir = "{h / "meta"}"\n'
            f'[data]\n  dir = "{h / "data"}"\n  wal-dir = "{h / "wal"}"\n  query-log-enabled = false\n'
            '  index-version = "inmem"\n'
            f'[http]\n  enabled = true\n  bind-address = "{sc.host}:{sc.influx_port}"\n'
            "  auth-enabled = true\n  log-enabled = false\n  max-body-size = 0\n"
            f'  https-enabled = true\n  https-certificate = "{issued.cert_file}"\n'
            f'  https-private-key = "{issued.key_file}"\n'
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )
        return conf

    def _query(self, q: str, user: str | None) -> dict[str, object]:
        headers = {}
        if user is not None:
            raw = f"{user}:{self.sc.secret_value(f'influx-{user}')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        body = urllib.parse.urlencode({"q": q}).encode()
        request = urllib.request.Request(f"{self.url}/query", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.sc.client_context()) as resp:
                answer: dict[str, object] = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"secure InfluxDB refused an administrative statement (HTTP {exc.code})") from None
        return answer

    def _has_admin(self) -> bool:
        try:
            self._query("SHOW USERS", "admin")
        except ServiceError:
            return False
        return True

    def up(self) -> None:
        influxd = _apt_install("influxdb", "influxd")
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        if not self.running():
            if _port_open(self.sc.host, self.sc.influx_port):
                raise ServiceError(f"port {self.sc.influx_port} is taken by a process this state folder did not start")
            _start_detached([influxd, "-config", str(conf)], self.log_file, self.pid_file, self.home)
        _wait("secure InfluxDB", self.ready, 60, self.log_file)
        marker = self.home / ".users"
        if not marker.exists():
            # With auth on and no user yet, InfluxDB 1.x accepts exactly one statement unauthenticated: the admin.
            admin = self.sc.secret_value("influx-admin")
            if not self._has_admin():
                self._query(f"CREATE USER admin WITH PASSWORD '{admin}' WITH ALL PRIVILEGES", None)
            db = self.sc.base.influx_database
            self._query(f'CREATE DATABASE "{db}"', "admin")
            self._query(f"CREATE USER vigil WITH PASSWORD '{self.sc.secret_value('influx-vigil')}'", "admin")
            self._query(f'GRANT ALL ON "{db}" TO vigil', "admin")
            marker.write_text("admin vigil\n")

    def down(self) -> bool:
        return _stop_pid("secure InfluxDB", self.pid_file)

    def status(self) -> str:
        return f"ready at {self.url}" if self.ready() else ("started" if self.running() else "stopped")


class SecureMosquitto:
    """Mosquitto over TLS (server certificate from the private CA) with a password file and no anonymous login."""

    name = "mosquitto-secure"

    def __init__(self, sc: SecureConfig) -> None:
        self.sc = sc
        self.home = sc.home / "mosquitto"
        self.pid_file = self.home / "mosquitto.pid"
        self.log_file = self.home / "mosquitto.log"

    def running(self) -> bool:
        return _read_pid(self.pid_file) is not None

    def ready(self) -> bool:
        return _port_open(self.sc.host, self.sc.mqtt_port)

    def up(self) -> None:
        binary = _apt_install("mosquitto", "mosquitto")
        passwd_tool = _apt_install("mosquitto", "mosquitto_passwd")
        sc = self.sc
        self.home.mkdir(parents=True, exist_ok=True)
        issued = sc.ca().issue("mosquitto", hosts=("localhost", sc.host), folder=self.home / "tls")
        passwords = self.home / "passwd"
        passwords.unlink(missing_ok=True)
        passwords.touch(mode=0o600)
        for user in MQTT_USERS:
            # -b takes the password on the command line of a short-lived local process (development stack only).
            done = subprocess.run(
                [passwd_tool, "-b", str(passwords), user, sc.secret_value(f"mqtt-{user}")],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise ServiceError(f"mosquitto_passwd failed for user {user}: {done.stderr[-500:]}")
        conf = self.home / "mosquitto.conf"
        conf.write_text(
            f"listener {sc.mqtt_port} {sc.host}\n"
            f"cafile {sc.pki / 'ca.crt'}\ncertfile {issued.cert_file}\nkeyfile {issued.key_file}\n"
            "tls_version tlsv1.2\nrequire_certificate false\n"
            f"allow_anonymous false\npassword_file {passwords}\npersistence false\nlog_dest stdout\n"
            # Started as root, Mosquitto would drop to user 'mosquitto', who cannot read the 0600 key and passwords.
            f"user {getpass.getuser()}\n"
        )
        if self.running():
            os.kill(_read_pid(self.pid_file) or 0, 1)  # SIGHUP: reload the certificate and the password file
        else:
            if _port_open(sc.host, sc.mqtt_port):
                raise ServiceError(f"port {sc.mqtt_port} is taken by a process this state folder did not start")
            _start_detached([binary, "-c", str(conf)], self.log_file, self.pid_file, self.home)
        _wait("secure Mosquitto", self.ready, 20, self.log_file)

    def down(self) -> bool:
        return _stop_pid("secure Mosquitto", self.pid_file)

    def status(self) -> str:
        return f"ready at {self.sc.host}:{self.sc.mqtt_port} (TLS)" if self.ready() else "stopped"


def secure_services(sc: SecureConfig) -> list[SecureKafka | SecureInflux | SecureMosquitto]:
    return [SecureKafka(sc), SecureInflux(sc), SecureMosquitto(sc)]


def up(sc: SecureConfig) -> None:
    """Start the secured stack (idempotent), create the pipeline's topics and every service's ACLs."""
    from vigil.acls import apply_acls
    from vigil.config import Topics

    sc.ca()._load_or_create()
    for svc in secure_services(sc):
        svc.up()
    kafka = SecureKafka(sc)
    apply_acls(kafka.admin_kwargs(), Topics())
    env = "\n".join(f"export {k}={v}" for k, v in sc.settings().items()) + "\n"
    (sc.home / "services.env").write_text(env)


def down(sc: SecureConfig) -> None:
    for svc in reversed(secure_services(sc)):
        svc.down()
