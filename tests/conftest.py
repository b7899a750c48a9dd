"""Suite-wide pytest configuration."""

pytest_plugins = ["tests.support.aws_fixtures"]
