"""Internal helpers: input validation, seeding and growable buffers."""
