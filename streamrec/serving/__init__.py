"""Serving: one model version served (filters, live adds, cold start, search),
hot-swapped on announcements; the HTTP API, the web console and the
real-time publisher of fresh recommendations.
"""
