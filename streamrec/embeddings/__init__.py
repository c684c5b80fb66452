"""The two-tower model: the feature encoding shared by training and serving,
the towers, and model versions in the store.
"""
