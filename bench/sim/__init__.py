"""Discrete-event simulation of an RQ queue, its worker pods, and two autoscalers."""
