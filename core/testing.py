"""pytest fixtures for Vigie and for plugin authors (loaded as a pytest plugin)."""
