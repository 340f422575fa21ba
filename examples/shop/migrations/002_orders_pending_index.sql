-- The worker's sweep looks for old pending orders.
CREATE INDEX orders_pending_created_at_idx ON orders (created_at) WHERE status = 'pending';
