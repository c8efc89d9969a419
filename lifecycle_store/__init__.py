"""driftline: lifecycle_store."""
