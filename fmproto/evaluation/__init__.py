"""Scoring and showing a classifier: accuracy and confusion, the five methods, pictures, explanations."""
