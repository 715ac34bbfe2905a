"""PyTake tenants service."""
