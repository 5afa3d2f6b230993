"""Example cloud agents: the claims scenario (``python -m cloud_agent.examples.claims``)."""
