"""The monitor step: decode and validate input messages, archive rows, detect drift.

Pure: no Kafka client and no event loop. Every transport (the Faust worker, the embedded
runner) feeds it micro-batches of `RawMessage`.
"""
