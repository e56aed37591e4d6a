"""The ruleset language and its compiler: model, YAML source, expressions, stages."""
