"""Offline evaluation of DocSift classifiers on labelled folders (`python -m evals.run`)."""
