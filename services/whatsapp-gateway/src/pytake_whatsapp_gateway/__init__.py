"""PyTake whatsapp-gateway service."""
