-- The incident list filters by status and shows the newest first.
CREATE INDEX incidents_status_created_at_idx ON incidents (status, created_at DESC);
