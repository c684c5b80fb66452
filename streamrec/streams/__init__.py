"""The stream worker: agents folding events into changelog-backed tables,
the co-partitioning assignor, dead letters, and the worker's HTTP view.
"""
