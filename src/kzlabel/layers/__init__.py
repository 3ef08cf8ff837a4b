"""Label layers (C2PA manifest, ...)."""
