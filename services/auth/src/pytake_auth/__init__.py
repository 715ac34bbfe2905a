"""PyTake auth service."""
