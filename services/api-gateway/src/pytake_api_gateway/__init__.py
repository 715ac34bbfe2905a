"""PyTake api-gateway service."""
