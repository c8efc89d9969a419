"""driftline: detectors."""
