"""Offline engine and CLI: render, boot and check an mqtt-estate stack without the Pulumi CLI or a cluster."""
