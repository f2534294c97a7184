-- The order saga keeps its decisions in the database, the guard every sender consults:
--
-- compensation_started_at: set the moment a compensation is decided, before any step runs.
--   From then on no send may begin (begin_send refuses), and the sweep never restarts the
--   order, even if the workflow that began it was terminated halfway.
-- mahak_receipt_id: the receipt Mahak created for the order's payment (the send keeps it, so
--   a reversal can name it and a probe can confirm it).
-- mahak_leftovers: what a compensation could not remove from Mahak (a staff task names it);
--   NULL when Mahak holds nothing of the order.
ALTER TABLE shop_orders
    ADD COLUMN compensation_started_at timestamptz,
    ADD COLUMN mahak_receipt_id bigint,
    ADD COLUMN mahak_leftovers text;

-- The sweep's question gains "compensation never began"; the predicate must match its query.
DROP INDEX shop_orders_unsynced_idx;
CREATE INDEX shop_orders_unsynced_idx ON shop_orders (paid_at, id)
    WHERE payment_status = 'paid' AND NOT synced_to_mahak AND sync_status <> 'cancelled'
      AND compensation_started_at IS NULL;
