"""Policy tools: case tests, coverage, formatting, corpora, impact analysis."""
