"""Telling a person: alerts, the freshness checks behind missed deadlines, the morning digest."""
