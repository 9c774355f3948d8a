"""Built-in connectors: sensor networks and citizen channels in, messages out."""
