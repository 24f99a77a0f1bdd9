"""Root pytest configuration: loads the real-component fixture layer for every test folder."""

pytest_plugins = ["tests.fixtures.components"]
