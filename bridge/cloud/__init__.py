"""The cloud gateway runtime: the link's server side, wired to the cloud NATS and JetStream."""
