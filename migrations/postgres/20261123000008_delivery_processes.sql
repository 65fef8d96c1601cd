-- Delivery processes announce themselves once a second, so that ordered lanes can be shared
-- evenly among the live ones (a row not refreshed for a lease period counts as gone).
CREATE TABLE delivery_processes (
    owner   text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
