"""DocSift: self-hosted document classification."""
