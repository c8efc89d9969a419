"""The in-process runtime: the `InMemoryBus` twin of Kafka and the `EmbeddedRunner`."""
