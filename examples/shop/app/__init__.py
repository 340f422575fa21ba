"""shop: an example web API + queue worker deployed with headway."""
