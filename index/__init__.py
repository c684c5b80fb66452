"""Serving: FAISS index kinds, the cost model and tuner, the serving index with
filters and hot swap, the HTTP API, the real-time publisher.
"""
