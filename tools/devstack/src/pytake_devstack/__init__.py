"""PyTake devstack."""
