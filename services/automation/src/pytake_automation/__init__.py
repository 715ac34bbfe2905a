"""PyTake automation: rules, automatic messages, chatbot flows, SLA and CSAT."""
