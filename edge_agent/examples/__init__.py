"""Example on-prem agents: the claims scenario (``python -m edge_agent.examples.claims``)."""
