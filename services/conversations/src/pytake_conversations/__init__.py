"""PyTake conversations service."""
