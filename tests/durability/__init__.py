"""Durability tests: flowc's processes and their PostgreSQL stopped, crashed and restarted."""
