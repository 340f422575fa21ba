"""tracker: the Incident Tracker's API (FastAPI + PostgreSQL), deployed with headway."""
