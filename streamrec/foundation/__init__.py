"""The foundation: the contracts and the shared base every package stands on.

Settings, topics, wire records and their codec, Kafka helpers and the
partitioner, the user-features fold, the catalog view, the model store.
Imports nothing of streamrec's other packages (docs/architecture.md).
"""
