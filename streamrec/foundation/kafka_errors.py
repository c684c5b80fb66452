"""Why a Kafka client failed, in one line an operator can act on.

aiokafka logs why it could not reach a bootstrap broker (a refused password,
an untrusted certificate) and then raises a bare "Unable to bootstrap".
`BootstrapCauses`, a filter on its client's logger, keeps that cause out of the log
and in hand, and `explain` puts it, with the setting to look at, in the
command's single error line.
"""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaConnectionError, KafkaError

# aiokafka.client's messages when a bootstrap broker fails, with the arguments host, port, cause
BOOTSTRAP_FAILURES = ('Unable connect to "%s:%s": %s', 'Unable to request metadata from "%s:%s": %s')

HINTS = (  # a fragment of the cause -> the setting to look at
    ("SaslAuthenticationFailed", "check STREAMREC_KAFKA_SASL_USERNAME and STREAMREC_KAFKA_SASL_PASSWORD"),
    ("CERTIFICATE_VERIFY_FAILED", "the brokers' certificate is not signed by STREAMREC_KAFKA_SSL_CAFILE"),
    ("WRONG_VERSION_NUMBER", "the brokers' listener does not speak TLS: check STREAMREC_KAFKA_SECURITY_PROTOCOL"),
    ("UnsupportedSaslMechanism", "the brokers do not enable STREAMREC_KAFKA_SASL_MECHANISM"),
    ("closed", "the broker hung up: does its listener expect TLS or SASL (STREAMREC_KAFKA_SECURITY_PROTOCOL)?"),
    ("Connect call failed", "nothing listens there: check STREAMREC_KAFKA_BOOTSTRAP"),
)


class BootstrapCauses(logging.Filter):
    """On the `aiokafka` logger (its client's): remembers each bootstrap broker's failure instead of logging it."""

    def __init__(self) -> None:
        super().__init__()
        self.causes: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in BOOTSTRAP_FAILURES or not isinstance(record.args, tuple) or len(record.args) != 3:
            return True
        host, port, cause = record.args
        self.causes[f"{host}:{port}"] = str(cause)
        return False

    @classmethod
    def install(cls) -> BootstrapCauses:
        causes = cls()
        logging.getLogger("aiokafka").addFilter(causes)
        return causes


def hint(cause: str) -> str:
    return next((advice for fragment, advice in HINTS if fragment in cause), "")


def explain(exc: BaseException, causes: BootstrapCauses | None) -> str:
    """The error line for `exc`: for a failed bootstrap, each broker's cause and what to check."""
    if isinstance(exc, KafkaConnectionError) and causes and causes.causes:
        reasons = "; ".join(f"{address}: {cause}" for address, cause in causes.causes.items())
        advice = hint(reasons)
        return f"cannot connect to Kafka ({reasons}){': ' + advice if advice else ''}"
    if isinstance(exc, KafkaError) and "Authorization" in type(exc).__name__:
        return f"{exc}: the brokers' ACLs do not let STREAMREC_KAFKA_SASL_USERNAME do this"
    return str(exc) or type(exc).__name__
