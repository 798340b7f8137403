"""Shared test support: data helpers and data sets, session rows, PostgreSQL and Dagster processes."""
