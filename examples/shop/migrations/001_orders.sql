-- Orders placed through POST /orders; the worker moves them from pending to done.
CREATE TABLE orders (
    id           bigserial PRIMARY KEY,
    item         text        NOT NULL CHECK (length(item) BETWEEN 1 AND 200),
    qty          integer     NOT NULL CHECK (qty > 0),
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
