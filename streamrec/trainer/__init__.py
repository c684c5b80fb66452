"""The trainer: the event log into examples, the training loop, evaluation,
versioned publishing behind a quality gate, the schedule.
"""
