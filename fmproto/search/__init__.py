"""Neighbour search: the exact engine and its certified screen, Annoy and hnswlib, error against training-set size."""
