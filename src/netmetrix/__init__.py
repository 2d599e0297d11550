"""netmetrix: agentless fleet metrics over SSH."""

__version__ = "0.1.0"
