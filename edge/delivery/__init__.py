"""Delivery: the durable outbox, the MQTT link and the ``edge alerts`` consumer tool."""
