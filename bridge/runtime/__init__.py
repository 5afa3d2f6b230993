"""What both runtimes share: NATS helpers, HTTP health and metrics, logging, configuration."""
