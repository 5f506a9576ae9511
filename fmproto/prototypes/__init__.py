"""Prototype classifiers: class means, k-means prototypes per class, GLVQ."""
