"""End-to-end tests against real `dagster dev`, `dagster-webserver` and `dagster-daemon` processes."""
