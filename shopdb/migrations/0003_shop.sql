-- The website's side: customers, orders and their lines, the restock ledger, the
-- notification outbox, and the inventory view that compares Mahak stock with what paid
-- web orders still hold.

CREATE FUNCTION shop_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

CREATE TABLE shop_customers (
    id              bigserial PRIMARY KEY,
    first_name      text NOT NULL DEFAULT '',
    last_name       text NOT NULL DEFAULT '',
    email           text,
    mobile          text,
    phone           text,
    national_code   text,
    address         text,
    city            text,
    state           text,
    postal_code     text,
    mahak_person_id bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER shop_customers_touch BEFORE UPDATE ON shop_customers
    FOR EACH ROW EXECUTE FUNCTION shop_touch_updated_at();

CREATE TABLE shop_orders (
    id                 bigserial PRIMARY KEY,
    customer_id        bigint NOT NULL REFERENCES shop_customers (id),
    amount             numeric NOT NULL CHECK (amount >= 0),
    currency           text NOT NULL DEFAULT 'IRR',
    payment_status     text NOT NULL DEFAULT 'unpaid'
                       CHECK (payment_status IN ('unpaid', 'paid', 'refunded')),
    payment_ref        text,
    paid_at            timestamptz,
    shipping_address   text,
    shipping_city      text,
    shipping_postal_code text,
    shipping_phone     text,
    shipping_cost      numeric NOT NULL DEFAULT 0 CHECK (shipping_cost >= 0),
    discount           numeric NOT NULL DEFAULT 0 CHECK (discount >= 0),
    description        text,
    -- Sent to Mahak as OrderClientId: deterministic, so a resend can never duplicate.
    order_client_id    bigint GENERATED ALWAYS AS (8000000000000000 + id) STORED UNIQUE,
    sync_status        text NOT NULL DEFAULT 'pending'
                       CHECK (sync_status IN ('pending', 'sending', 'synced', 'dispute', 'cancelled', 'failed')),
    synced_to_mahak    boolean NOT NULL DEFAULT false,
    mahak_synced_at    timestamptz,
    mahak_order_id     bigint,
    last_mahak_error   text,
    sync_attempts      integer NOT NULL DEFAULT 0,
    cancelled_at       timestamptz,
    cancel_reason      text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (payment_status = 'unpaid' OR payment_ref IS NOT NULL)
);
CREATE INDEX shop_orders_customer_idx ON shop_orders (customer_id);
-- The safety-net sweep's question: paid, not in Mahak, not cancelled.
CREATE INDEX shop_orders_unsynced_idx ON shop_orders (paid_at)
    WHERE payment_status = 'paid' AND NOT synced_to_mahak AND sync_status <> 'cancelled';
CREATE TRIGGER shop_orders_touch BEFORE UPDATE ON shop_orders
    FOR EACH ROW EXECUTE FUNCTION shop_touch_updated_at();

CREATE TABLE shop_order_lines (
    id                     bigserial PRIMARY KEY,
    order_id               bigint NOT NULL REFERENCES shop_orders (id) ON DELETE CASCADE,
    product_detail_id      bigint NOT NULL,  -- Mahak ProductDetailId
    store_id               bigint NOT NULL,  -- Mahak StoreId the line ships from
    quantity               numeric NOT NULL CHECK (quantity > 0),
    unit_price             numeric NOT NULL CHECK (unit_price >= 0),
    discount               numeric NOT NULL DEFAULT 0 CHECK (discount >= 0),
    -- Sent to Mahak as OrderDetailClientId.
    order_detail_client_id bigint GENERATED ALWAYS AS (8100000000000000 + id) STORED UNIQUE,
    mahak_order_detail_id  bigint,
    restocked_at           timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shop_order_lines_order_idx ON shop_order_lines (order_id);
CREATE INDEX shop_order_lines_detail_store_idx ON shop_order_lines (product_detail_id, store_id);

-- Restock ledger: one movement per line and reason, so a repeated cancel cannot restock twice.
CREATE TABLE shop_stock_movements (
    id                bigserial PRIMARY KEY,
    product_detail_id bigint NOT NULL,
    store_id          bigint NOT NULL,
    delta             numeric NOT NULL,
    reason            text NOT NULL,
    order_id          bigint REFERENCES shop_orders (id),
    order_line_id     bigint REFERENCES shop_order_lines (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_line_id, reason)
);

-- Customer SMS/email to send; `dedup_key` makes enqueueing idempotent.
CREATE TABLE notification_outbox (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    customer_id bigint REFERENCES shop_customers (id),
    recipient   text,
    order_id    bigint REFERENCES shop_orders (id),
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedup_key   text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);
CREATE INDEX notification_outbox_unsent_idx ON notification_outbox (created_at) WHERE sent_at IS NULL;

-- Per product detail and store: Mahak's stock against what paid web orders still hold
-- (paid, not yet accepted by Mahak, not cancelled). held > mahak_count1 is a conflict.
CREATE VIEW shop_inventory AS
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
    GROUP BY l.product_detail_id, l.store_id
)
SELECT product_detail_id, store_id,
       coalesce(stock.mahak_count1, 0) AS mahak_count1,
       coalesce(held.held, 0) AS held,
       coalesce(stock.mahak_count1, 0) - coalesce(held.held, 0) AS available,
       coalesce(held.order_ids, '{}'::bigint[]) AS order_ids
FROM stock FULL JOIN held USING (product_detail_id, store_id);
