"""The FAISS index: its kinds and knobs (GPU when present), the cost model that
measures builds against exact search, and the tuner that picks one for a version.
"""
