"""Model files: glnet's own format, its schema, and the reference code's checkpoints."""
