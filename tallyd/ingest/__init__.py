"""Event sources: HTTP, ZeroMQ and syslog."""
