-- Mahak's catalog (and its in-store sales), mirrored read-only for the shop.
--
-- Every mirrored row keeps Mahak's server id as its primary key, Mahak's RowVersion (int64),
-- a logical `deleted` flag (Mahak never removes rows, it re-emits them with Deleted=true) and
-- our own created_at/updated_at. There are deliberately no foreign keys between mirrored
-- tables: Mahak may send a child before its parent (different entities, different pages),
-- and a missing parent must not stop the sync. Money and quantities are numeric.

CREATE TABLE mahak_stores (
    id          bigint PRIMARY KEY,
    row_version bigint NOT NULL CHECK (row_version >= 0),
    deleted     boolean NOT NULL DEFAULT false,
    client_id   bigint,
    code        bigint,
    name        text NOT NULL DEFAULT '',
    stock       bigint,
    comment     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mahak_categories (
    id          bigint PRIMARY KEY,
    row_version bigint NOT NULL CHECK (row_version >= 0),
    deleted     boolean NOT NULL DEFAULT false,
    client_id   bigint,
    code        bigint,
    name        text NOT NULL DEFAULT '',
    color       text,
    icon        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mahak_products (
    id               bigint PRIMARY KEY,
    row_version      bigint NOT NULL CHECK (row_version >= 0),
    deleted          boolean NOT NULL DEFAULT false,
    client_id        bigint,
    code             bigint,
    category_id      bigint,
    name             text NOT NULL DEFAULT '',
    unit_name        text,
    unit_name2       text,
    unit_ratio       numeric,
    min_quantity     numeric,
    tax_percent      numeric,
    charge_percent   numeric,
    width            numeric,
    height           numeric,
    length           numeric,
    weight           numeric,
    product_type     integer,
    tags             text,
    description      text,
    data_hash        text,
    mahak_created_at timestamptz,
    mahak_updated_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_products_category_idx ON mahak_products (category_id);

-- A sellable variant: the id orders reference. All ten price levels are kept; `shop_price`
-- is the level the shop sells at (SHOP_PRICE_LEVEL), recorded in `shop_price_level`.
CREATE TABLE mahak_product_details (
    id                       bigint PRIMARY KEY,
    row_version              bigint NOT NULL CHECK (row_version >= 0),
    deleted                  boolean NOT NULL DEFAULT false,
    client_id                bigint,
    code                     bigint,
    product_id               bigint NOT NULL,
    properties               text,
    barcode                  text,
    price1                   numeric NOT NULL DEFAULT 0,
    price2                   numeric NOT NULL DEFAULT 0,
    price3                   numeric NOT NULL DEFAULT 0,
    price4                   numeric NOT NULL DEFAULT 0,
    price5                   numeric NOT NULL DEFAULT 0,
    price6                   numeric NOT NULL DEFAULT 0,
    price7                   numeric NOT NULL DEFAULT 0,
    price8                   numeric NOT NULL DEFAULT 0,
    price9                   numeric NOT NULL DEFAULT 0,
    price10                  numeric NOT NULL DEFAULT 0,
    discount                 numeric,
    default_sell_price_level integer,
    customer_price           numeric,
    shop_price               numeric NOT NULL CHECK (shop_price >= 0),
    shop_price_level         smallint NOT NULL CHECK (shop_price_level BETWEEN 1 AND 10),
    data_hash                text,
    mahak_created_at         timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_product_details_product_idx ON mahak_product_details (product_id);

-- What this site may sell: a detail offered to our visitor; deleted = withdrawn.
CREATE TABLE mahak_visitor_products (
    id                bigint PRIMARY KEY,
    row_version       bigint NOT NULL CHECK (row_version >= 0),
    deleted           boolean NOT NULL DEFAULT false,
    product_detail_id bigint NOT NULL,
    visitor_id        bigint NOT NULL,
    count1            numeric,
    count2            numeric,
    price             numeric,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_visitor_products_detail_idx ON mahak_visitor_products (product_detail_id);

-- Stock of one product detail in one store (Mahak's ProductDetailStoreAssets). Not unique
-- per (detail, store): Mahak may replace an asset row by a new one; readers sum live rows.
CREATE TABLE mahak_stock (
    id                bigint PRIMARY KEY,
    row_version       bigint NOT NULL CHECK (row_version >= 0),
    deleted           boolean NOT NULL DEFAULT false,
    product_detail_id bigint NOT NULL,
    store_id          bigint NOT NULL,
    count1            numeric NOT NULL DEFAULT 0,
    count2            numeric NOT NULL DEFAULT 0,
    mahak_created_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_stock_detail_store_idx ON mahak_stock (product_detail_id, store_id);

CREATE TABLE mahak_pictures (
    id            bigint PRIMARY KEY,
    row_version   bigint NOT NULL CHECK (row_version >= 0),
    deleted       boolean NOT NULL DEFAULT false,
    client_id     bigint,
    code          bigint,
    file_name     text,
    display_order integer,
    title         text,
    url           text,
    file_size     bigint,
    width         integer,
    height        integer,
    format        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Links a picture to a product (entity_type 102) or a person (101) by Mahak server id.
CREATE TABLE mahak_photo_galleries (
    id          bigint PRIMARY KEY,
    row_version bigint NOT NULL CHECK (row_version >= 0),
    deleted     boolean NOT NULL DEFAULT false,
    picture_id  bigint NOT NULL,
    entity_type integer NOT NULL,
    item_code   bigint NOT NULL,
    item_type   integer,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_photo_galleries_item_idx ON mahak_photo_galleries (entity_type, item_code);

CREATE TABLE mahak_people (
    id            bigint PRIMARY KEY,
    row_version   bigint NOT NULL CHECK (row_version >= 0),
    deleted       boolean NOT NULL DEFAULT false,
    client_id     bigint,
    code          bigint,
    group_id      bigint,
    person_type   integer,
    first_name    text,
    last_name     text,
    organization  text,
    national_code text,
    email         text,
    mobile        text,
    phone         text,
    address       text,
    city          text,
    state         text,
    postal_code   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_people_client_idx ON mahak_people (client_id);

CREATE TABLE mahak_visitor_people (
    id               bigint PRIMARY KEY,
    row_version      bigint NOT NULL CHECK (row_version >= 0),
    deleted          boolean NOT NULL DEFAULT false,
    person_id        bigint,
    person_client_id bigint,
    visitor_id       bigint NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Orders as Mahak holds them: in-store sales (which reduce stock) and our own web orders
-- once accepted (matched to shop_orders by client_id = shop_orders.order_client_id).
CREATE TABLE mahak_orders (
    id                bigint PRIMARY KEY,
    row_version       bigint NOT NULL CHECK (row_version >= 0),
    deleted           boolean NOT NULL DEFAULT false,
    client_id         bigint,
    code              bigint,
    person_id         bigint,
    person_client_id  bigint,
    visitor_id        bigint,
    receipt_client_id bigint,
    order_type        integer,
    order_date        timestamptz,
    delivery_date     timestamptz,
    discount          numeric,
    discount_type     integer,
    send_cost         numeric,
    other_cost        numeric,
    settlement_type   integer,
    description       text,
    shipping_address  text,
    mahak_created_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_orders_client_idx ON mahak_orders (client_id);

CREATE TABLE mahak_order_details (
    id                bigint PRIMARY KEY,
    row_version       bigint NOT NULL CHECK (row_version >= 0),
    deleted           boolean NOT NULL DEFAULT false,
    client_id         bigint,
    order_id          bigint,
    order_client_id   bigint,
    item_type         integer,
    product_detail_id bigint,
    store_id          bigint,
    price             numeric,
    count1            numeric,
    count2            numeric,
    discount          numeric,
    discount_type     integer,
    tax_percent       numeric,
    charge_percent    numeric,
    description       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_order_details_order_idx ON mahak_order_details (order_id);

CREATE TABLE mahak_receipts (
    id               bigint PRIMARY KEY,
    row_version      bigint NOT NULL CHECK (row_version >= 0),
    deleted          boolean NOT NULL DEFAULT false,
    client_id        bigint,
    order_client_id  bigint,
    person_id        bigint,
    person_client_id bigint,
    visitor_id       bigint,
    cash_amount      numeric,
    receipt_date     timestamptz,
    description      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
