-- What paid web orders "hold" against Mahak's stock counts only what Mahak does not account
-- for yet. Mahak decrements its stock when it saves an order, so an order it holds (its
-- mirrored order, or the mirrored line, carries our client id and is not deleted) is already
-- inside `mahak_count1`, whether or not the shop has marked it synced (answer lost, dispute).
-- An order whose compensation began is being cancelled and holds nothing either.
--
-- `shopdb.orders.uncovered_holdings` applies the same predicate; keep the two alike.

CREATE INDEX mahak_order_details_client_idx ON mahak_order_details (client_id);

CREATE OR REPLACE VIEW shop_inventory AS
WITH stock AS (
    SELECT product_detail_id, store_id, sum(count1) AS mahak_count1
    FROM mahak_stock
    WHERE NOT deleted
    GROUP BY product_detail_id, store_id
), held AS (
    SELECT l.product_detail_id, l.store_id, sum(l.quantity) AS held,
           array_agg(DISTINCT o.id ORDER BY o.id) AS order_ids
    FROM shop_order_lines l
    JOIN shop_orders o ON o.id = l.order_id
    WHERE o.payment_status = 'paid' AND NOT o.synced_to_mahak AND o.sync_status <> 'cancelled'
      AND o.compensation_started_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM mahak_orders m
                      WHERE m.client_id = o.order_client_id AND NOT m.deleted)
      AND NOT EXISTS (SELECT 1 FROM mahak_order_details md
                      WHERE md.client_id = l.order_detail_client_id AND NOT md.deleted)
    GROUP BY l.product_detail_id, l.store_id
)
SELECT product_detail_id, store_id,
       coalesce(stock.mahak_count1, 0) AS mahak_count1,
       coalesce(held.held, 0) AS held,
       coalesce(stock.mahak_count1, 0) - coalesce(held.held, 0) AS available,
       coalesce(held.order_ids, '{}'::bigint[]) AS order_ids
FROM stock FULL JOIN held USING (product_detail_id, store_id);
