"""Webhooks: signed JSON events (batch completed, optionally each item) for an account's URL."""
