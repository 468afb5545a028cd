"""Batches: many documents classified by queue workers, exactly once each."""
