"""Meta's webhooks: parsing, signature verification and durable intake."""
