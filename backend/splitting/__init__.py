"""Splitting a file that holds several documents into labelled segments."""
