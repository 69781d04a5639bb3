"""Claims and verdicts: the claims loader, the decision rule, the report and its charts."""
