"""Kafka client options: TLS and SASL from the settings, for every client."""

from __future__ import annotations

import asyncio
import ssl

from pydantic import SecretStr

from foundation import kafka
from foundation.settings import Settings


def test_plaintext_adds_nothing():
    assert kafka.security_options(Settings()) == {}


def test_sasl_over_tls_passes_the_mechanism_credentials_and_a_tls_context():
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="streamrec",
        kafka_sasl_password=SecretStr("s3cret"),
    )
    options = kafka.security_options(settings)
    assert isinstance(options.pop("ssl_context"), ssl.SSLContext)
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "streamrec",
        "sasl_plain_password": "s3cret",
    }


def test_every_client_the_product_creates_takes_the_process_settings():
    async def protocols() -> tuple[str, str]:  # aiokafka clients are made inside a loop
        return (
            kafka.reader("127.0.0.1:9")._client._security_protocol,
            kafka.admin_client("127.0.0.1:9")._client._security_protocol,
        )

    kafka.use_security(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u"))
    try:
        assert asyncio.run(protocols()) == ("SASL_PLAINTEXT", "SASL_PLAINTEXT")
        assert kafka.client_options()["sasl_plain_username"] == "u"
    finally:
        kafka.use_security(Settings())
    assert kafka.client_options() == {} and asyncio.run(protocols()) == ("PLAINTEXT", "PLAINTEXT")
