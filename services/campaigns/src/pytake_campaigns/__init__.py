"""PyTake campaigns: template campaigns to frozen audiences."""
