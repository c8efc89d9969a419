"""The monitor loop and the retrainer loop, each written once above the transport."""
