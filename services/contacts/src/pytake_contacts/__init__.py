"""PyTake contacts service."""
