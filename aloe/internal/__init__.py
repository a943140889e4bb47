"""Private helpers shared by several modules; not part of the public API."""
