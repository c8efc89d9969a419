"""driftline: streams."""
