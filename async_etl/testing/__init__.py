"""Test helpers shipped with the package: an embedded PostgreSQL and a CrateDB stand-in."""
