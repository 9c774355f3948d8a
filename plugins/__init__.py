"""Built-in plugins that a commune may enable: routing, due dates, telemetry..."""
