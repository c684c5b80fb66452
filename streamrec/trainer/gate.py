"""The quality gate: a new version becomes current only if it is not worse
than the current one on the same held-out users (or the run forces it)."""

from __future__ import annotations

from streamrec.foundation.store import Gate

GATE_K = 20  # the gate compares recall@GATE_K


def decide_gate(
    new_recall: float, current: str | None, current_recall: float | None, *, tolerance: float, force: bool
) -> tuple[Gate, str]:
    """The gate's record and the sentence that explains it. The first version
    always passes; a later one passes at or above the current's recall minus
    `tolerance`; `force` promotes one that does not, and says so."""
    passed = current is None or current_recall is None or new_recall >= current_recall - tolerance
    gate = Gate(GATE_K, current, current_recall, new_recall, passed, forced=force and not passed)
    if current is None:
        return gate, "first version"
    if gate.forced:
        return gate, "forced past the gate"
    if passed:
        return gate, f"recall@{GATE_K} {new_recall:.4f} vs current {current_recall:.4f}"
    return gate, (
        f"kept {current}: new recall@{GATE_K} {new_recall:.4f} < current {current_recall:.4f} (tolerance {tolerance})"
    )


def promotes(gate: Gate) -> bool:
    return gate.passed or gate.forced
