"""``rbridge up``: the whole hybrid system on one machine, with embedded defaults.

Two nats-server processes (edge and cloud), development certificates and keys, the cloud gateway
and the edge bridge as their own processes, the claims scenario's agents, and a feeder of sample
claims; a live view of what crosses and what does not.
"""
