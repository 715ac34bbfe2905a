"""HTTP API of automation: rules, settings (and flows, SLA, CSAT from their modules)."""
