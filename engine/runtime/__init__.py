"""The runtime: the durable_rules seam, facts, decide, explain, texts, loading."""
