"""The Kafka runtime: the Faust worker, confluent-kafka clients, the retrainer service,
the outbox publisher and replay."""
