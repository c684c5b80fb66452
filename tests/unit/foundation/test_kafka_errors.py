"""Why a Kafka client failed, in the one error line a command prints."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from streamrec.foundation.kafka_errors import BOOTSTRAP_FAILURES, BootstrapCauses, explain


def _bootstrap_failure(causes: BootstrapCauses, cause: str, message: str = BOOTSTRAP_FAILURES[0]) -> bool:
    record = logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, message, ("10.0.0.1", 9093, cause), None)
    return causes.filter(record)


def test_a_refused_password_names_the_settings_to_check_and_is_not_logged_twice():
    causes = BootstrapCauses()
    assert not _bootstrap_failure(causes, "[Error 58] SaslAuthenticationFailed: invalid credentials")
    line = explain(KafkaConnectionError("Unable to bootstrap from [...]"), causes)
    assert "10.0.0.1:9093" in line and "invalid credentials" in line and "STREAMREC_KAFKA_SASL_PASSWORD" in line


def test_each_cause_gets_its_own_advice():
    for cause, advice in [
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "STREAMREC_KAFKA_SSL_CAFILE"),
        ("KafkaConnectionError: Connection at 10.0.0.1:9093 closed", "STREAMREC_KAFKA_SECURITY_PROTOCOL"),
        ("[Errno 111] Connect call failed ('10.0.0.1', 9093)", "STREAMREC_KAFKA_BOOTSTRAP"),
    ]:
        causes = BootstrapCauses()
        _bootstrap_failure(causes, cause, BOOTSTRAP_FAILURES[1])
        assert advice in explain(KafkaConnectionError(), causes), cause


def test_other_records_and_errors_pass_unchanged():
    causes = BootstrapCauses()
    other = logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, "Topic %s is not authorized", ("t",), None)
    assert causes.filter(other) and not causes.causes
    assert explain(KafkaConnectionError("Unable to bootstrap"), causes) == "KafkaConnectionError: Unable to bootstrap"
    assert "ACLs" in explain(TopicAuthorizationFailedError("t.recs.control"), causes)
    assert explain(OSError("no such file"), causes) == "no such file"
