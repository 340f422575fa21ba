"""Servers reached over SSH: running headway's commands on them, bootstrapping them."""
