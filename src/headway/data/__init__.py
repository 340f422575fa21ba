"""Databases: managed containers, verified backups, safe restore."""
