"""Kafka client options: TLS and SASL from the settings, carried by an explicit connection."""

from __future__ import annotations

import asyncio
import pickle
import ssl

from pydantic import SecretStr

from streamrec.foundation import kafka
from streamrec.foundation.settings import Settings


def test_plaintext_adds_nothing():
    assert kafka.security_options(Settings().kafka) == {}
    assert not kafka.KafkaConnection.from_settings(Settings().kafka, "b:9092").secured


def test_sasl_over_tls_passes_the_mechanism_credentials_and_a_tls_context():
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="streamrec",
        kafka_sasl_password=SecretStr("s3cret"),
    )
    options = kafka.security_options(settings.kafka)
    assert isinstance(options.pop("ssl_context"), ssl.SSLContext)
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "streamrec",
        "sasl_plain_password": "s3cret",
    }


def test_a_secured_connection_crosses_to_a_spawned_process_and_is_secured_again_there():
    """An SSLContext does not pickle: the answering and traffic processes got none (found with SASL_SSL)."""
    settings = Settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_username="streamrec", kafka_sasl_password=SecretStr("s3cret")
    )
    connection = kafka.KafkaConnection.from_settings(settings.kafka, "b:9093")
    connection.facts["idempotence"] = False
    again = kafka.KafkaConnection.from_parent(settings.kafka, pickle.loads(pickle.dumps(connection.to_child())))
    assert (again.bootstrap, again.facts) == ("b:9093", {"idempotence": False})
    options = again.client_options()
    assert isinstance(options["ssl_context"], ssl.SSLContext) and options["sasl_plain_password"] == "s3cret"


def test_every_client_made_from_a_connection_takes_its_security():
    secured = kafka.KafkaConnection.from_settings(
        Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u").kafka, "127.0.0.1:9"
    )

    async def protocols(connection: kafka.KafkaConnection) -> tuple[str, str]:  # clients are made inside a loop
        return (
            kafka.reader(connection)._client._security_protocol,
            kafka.admin_client(connection)._client._security_protocol,
        )

    assert asyncio.run(protocols(secured)) == ("SASL_PLAINTEXT", "SASL_PLAINTEXT")
    assert secured.client_options()["sasl_plain_username"] == "u"
    # Nothing is left behind for the next client: a plain connection stays plain.
    assert asyncio.run(protocols(kafka.KafkaConnection("127.0.0.1:9"))) == ("PLAINTEXT", "PLAINTEXT")


def test_a_connection_never_shows_its_secrets():
    secured = kafka.KafkaConnection.from_settings(
        Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_password=SecretStr("s3cret")).kafka, "b:9092"
    )
    assert "s3cret" not in repr(secured) and str(secured) == "b:9092"
