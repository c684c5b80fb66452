"""What makes an Apache Kafka cluster on this machine enforce security as a
shop's does: SASL/SCRAM-SHA-512 over TLS on the clients' listener (and
between brokers), users created at format time, and ACLs checked by Kafka's
StandardAuthorizer.

The certificates come from a throw-away certificate authority made with
`openssl` (present wherever a JDK is). The controllers' quorum listens in
plain text on loopback and its principal (ANONYMOUS) is a super user: the
brokers register with the controllers there; no client is told of it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

from streamrec.broker import BrokerError

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"  # the brokers' own user (between brokers) and a super user
CERTIFICATE_DAYS = 7


def _openssl(*arguments: str, cwd: Path) -> None:
    finished = subprocess.run(["openssl", *arguments], cwd=cwd, capture_output=True, text=True)
    if finished.returncode != 0:
        raise BrokerError(f"openssl {arguments[0]} failed: {finished.stderr.strip()}")


def make_authority(directory: Path, name: str) -> Path:
    """A self-signed certificate authority: `name`.pem and its key, in `directory`."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        str(CERTIFICATE_DAYS),
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.pem",
        cwd=directory,
    )
    return directory / f"{name}.pem"


def make_broker_keystore(directory: Path, authority: Path, host: str) -> Path:
    """A PEM keystore (key, then certificate) for `host`, signed by `authority`;
    the name is in the subject alternative names, as clients verify it."""
    alt = f"IP:{host}" if host.replace(".", "").isdigit() else f"DNS:{host}"
    (directory / "broker.ext").write_text(f"subjectAltName={alt},DNS:localhost\n")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={host}",
        "-keyout",
        "broker.key",
        "-out",
        "broker.csr",
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "broker.csr",
        "-CA",
        str(authority),
        "-CAkey",
        str(authority.with_suffix(".key")),
        "-CAcreateserial",
        "-days",
        str(CERTIFICATE_DAYS),
        "-extfile",
        "broker.ext",
        "-out",
        "broker.crt",
        cwd=directory,
    )
    keystore = directory / "broker-keystore.pem"
    keystore.write_text((directory / "broker.key").read_text() + (directory / "broker.crt").read_text())
    return keystore


@dataclass(frozen=True)
class ClusterSecurity:
    """The TLS material and SCRAM users of a secured cluster (passwords: test or laptop ones)."""

    ca_file: Path
    keystore: Path
    users: dict[str, str]  # name -> password, ADMIN among them

    @classmethod
    def create(cls, directory: Path, host: str, users: dict[str, str]) -> ClusterSecurity:
        if shutil.which("openssl") is None:
            raise BrokerError("a secured cluster needs openssl on the PATH (apt-get install openssl)")
        if ADMIN not in users:
            raise ValueError(f"the users must include {ADMIN!r}, the brokers' own")
        directory.mkdir(parents=True, exist_ok=True)
        authority = make_authority(directory, "streamrec-test-ca")
        return cls(authority, make_broker_keystore(directory, authority, host), dict(users))

    def broker_options(self) -> dict[str, str]:
        """server.properties for a node whose clients' listener is named SASL_SSL."""
        login = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN}" password="{self.users[ADMIN]}";'
        )
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": login,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_arguments(self) -> list[str]:
        """The storage tool's arguments that create every SCRAM user in the cluster's first metadata."""
        return [
            a
            for name, password in self.users.items()
            for a in ("--add-scram", f"{MECHANISM}=[name={name},password={password}]")
        ]

    def client_options(self, user: str = ADMIN) -> dict[str, Any]:
        """aiokafka's options for `user` (what the STREAMREC_KAFKA_* settings give a streamrec process)."""
        return {
            "security_protocol": "SASL_SSL",
            "ssl_context": create_ssl_context(cafile=str(self.ca_file)),
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": user,
            "sasl_plain_password": self.users[user],
        }

    def settings_environment(self, user: str) -> dict[str, str]:
        """The STREAMREC_KAFKA_* variables that connect a streamrec process as `user`."""
        return {
            "STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "STREAMREC_KAFKA_SASL_MECHANISM": MECHANISM,
            "STREAMREC_KAFKA_SASL_USERNAME": user,
            "STREAMREC_KAFKA_SASL_PASSWORD": self.users[user],
            "STREAMREC_KAFKA_SSL_CAFILE": str(self.ca_file),
        }

    def java_client_properties(self, path: Path, user: str = ADMIN) -> Path:
        """A Java client's properties for `user` (for Kafka's own command-line tools)."""
        path.write_text(
            "security.protocol=SASL_SSL\n"
            f"sasl.mechanism={MECHANISM}\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{user}" password="{self.users[user]}";\n'
            f"ssl.truststore.type=PEM\nssl.truststore.location={self.ca_file}\n"
        )
        return path
