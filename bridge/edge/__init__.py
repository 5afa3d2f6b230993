"""The edge bridge runtime: RB_OUT on the local NATS, the policy, the audit trail, the links."""
