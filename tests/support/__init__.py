"""Test helpers shared by the suite (fixture discovery, local AWS endpoint)."""
