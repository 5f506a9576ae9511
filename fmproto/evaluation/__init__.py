"""Scoring and showing a classifier: accuracy and confusion, the four methods, pictures, explanations."""
