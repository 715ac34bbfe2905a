"""PyTake integrations: outgoing signed webhooks."""
