"""Outbound messages: Graph API calls, Meta's error mapping, the send-once log."""
