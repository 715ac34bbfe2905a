"""Cross-service mechanics shared by every PyTake service (never business rules)."""
