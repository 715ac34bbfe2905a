"""Chatbot flows: a declarative graph (definition), its publish checks (validation) and
a pure interpreter (interpreter); the service wires them to sessions and events."""
