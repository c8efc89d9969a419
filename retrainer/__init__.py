"""driftline: retrainer."""
