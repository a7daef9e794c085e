"""airlift: provision air-gapped fleets running Azure AI disconnected containers."""

__version__ = "0.1.0"
