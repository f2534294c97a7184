-- The storefront's catalog (issue 18): the Mahak entities a shop needs to show and price a
-- variant, and one read model over them (`shop_catalog`, `shop_catalog_group_prices`), so no
-- shop developer decodes raw Mahak rows. Mirrored tables follow 0001: Mahak's server id as
-- the key, RowVersion, a logical `deleted` flag, no foreign keys (a child may arrive before
-- its parent). Columns named by the README's "Storefront catalog" section are a public
-- contract.

CREATE TABLE mahak_person_groups (
    id               bigint PRIMARY KEY,
    row_version      bigint NOT NULL CHECK (row_version >= 0),
    deleted          boolean NOT NULL DEFAULT false,
    client_id        bigint,
    code             bigint,
    name             text NOT NULL DEFAULT '',
    discount_percent numeric,
    sell_price_level integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mahak_person_addresses (
    id          bigint PRIMARY KEY,
    row_version bigint NOT NULL CHECK (row_version >= 0),
    deleted     boolean NOT NULL DEFAULT false,
    client_id   bigint,
    code        bigint,
    person_id   bigint,
    title       text,
    address     text,
    postal_code text,
    tel         text,
    mobile      text,
    city_id     bigint,
    latitude    double precision,
    longitude   double precision,
    is_default  boolean,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_person_addresses_person_idx ON mahak_person_addresses (person_id);

-- An attribute a variant can have (size, colour). ProductDetails.Properties names it by
-- `code` (its PropertyDescriptionCode), not by id.
CREATE TABLE mahak_property_descriptions (
    id               bigint PRIMARY KEY,
    row_version      bigint NOT NULL CHECK (row_version >= 0),
    deleted          boolean NOT NULL DEFAULT false,
    client_id        bigint,
    code             bigint,
    name             text NOT NULL DEFAULT '',
    title            text,
    empty_title      text,
    data_type        integer,
    display_type     integer,
    description      text,
    mahak_updated_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_property_descriptions_code_idx ON mahak_property_descriptions (code);

-- The values an attribute offers, by the attribute's code.
CREATE TABLE mahak_property_description_values (
    id                        bigint PRIMARY KEY,
    row_version               bigint NOT NULL CHECK (row_version >= 0),
    deleted                   boolean NOT NULL DEFAULT false,
    client_id                 bigint,
    code                      bigint,
    property_description_code bigint,
    row_number                integer,
    value                     text,
    mahak_created_at          timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_property_description_values_code_idx
    ON mahak_property_description_values (property_description_code);

-- Which attributes a product's variants have.
CREATE TABLE mahak_product_properties (
    id                      bigint PRIMARY KEY,
    row_version             bigint NOT NULL CHECK (row_version >= 0),
    deleted                 boolean NOT NULL DEFAULT false,
    product_id              bigint,
    property_description_id bigint,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_product_properties_product_idx ON mahak_product_properties (product_id);

-- The names of price levels 1-10: `code` is the level (Price<code> of a product detail).
CREATE TABLE mahak_cost_level_names (
    id          bigint PRIMARY KEY,
    row_version bigint NOT NULL CHECK (row_version >= 0),
    deleted     boolean NOT NULL DEFAULT false,
    client_id   bigint,
    code        bigint,
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Mahak's settings by code (14000 default charge %, 14001 default tax %, 14008 tax on, ...);
-- `value` as Mahak sends it (text).
CREATE TABLE mahak_settings (
    id          bigint PRIMARY KEY,
    row_version bigint NOT NULL CHECK (row_version >= 0),
    deleted     boolean NOT NULL DEFAULT false,
    client_id   bigint,
    code        bigint,
    visitor_id  bigint,
    value       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_settings_code_idx ON mahak_settings (code);

CREATE TABLE mahak_units (
    id          bigint PRIMARY KEY,
    row_version bigint NOT NULL CHECK (row_version >= 0),
    deleted     boolean NOT NULL DEFAULT false,
    client_id   bigint,
    code        bigint,
    name        text NOT NULL DEFAULT '',
    comment     text,
    unit_tin    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Promotions: their terms are JSON strings Mahak does not document (`other_fields`), kept
-- as sent for the shop to read.
CREATE TABLE mahak_promotions (
    id           bigint PRIMARY KEY,
    row_version  bigint NOT NULL CHECK (row_version >= 0),
    deleted      boolean NOT NULL DEFAULT false,
    client_id    bigint,
    code         bigint,
    visitors     text,
    stores       text,
    other_fields text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mahak_promotion_details (
    id           bigint PRIMARY KEY,
    row_version  bigint NOT NULL CHECK (row_version >= 0),
    deleted      boolean NOT NULL DEFAULT false,
    client_id    bigint,
    code         bigint,
    promotion_id bigint,
    other_fields text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_promotion_details_promotion_idx ON mahak_promotion_details (promotion_id);

CREATE TABLE mahak_promotion_entities (
    id           bigint PRIMARY KEY,
    row_version  bigint NOT NULL CHECK (row_version >= 0),
    deleted      boolean NOT NULL DEFAULT false,
    client_id    bigint,
    code         bigint,
    promotion_id bigint,
    other_fields text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mahak_promotion_entities_promotion_idx ON mahak_promotion_entities (promotion_id);

-- Columns the catalog needs from rows already mirrored. `attributes` is the variant's
-- `properties` decoded against the property descriptions when the row is stored (and again
-- when a description changes; shopdb/storefront.py); elements no live description names
-- stay in `unknown_attributes`, as sent.
ALTER TABLE mahak_products ADD COLUMN unit_code bigint;
ALTER TABLE mahak_product_details
    ADD COLUMN discount1              numeric,
    ADD COLUMN discount2              numeric,
    ADD COLUMN discount3              numeric,
    ADD COLUMN discount4              numeric,
    ADD COLUMN default_discount_level integer,
    ADD COLUMN discount_type          integer,
    ADD COLUMN attributes             jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN unknown_attributes     jsonb NOT NULL DEFAULT '[]';

-- Decode warnings (a property code no description names) per sync run and entity.
ALTER TABLE mahak_sync_log ADD COLUMN warnings integer NOT NULL DEFAULT 0;

-- A setting's value as a number: the newest live row with that code (NULL when absent or
-- not a number).
CREATE FUNCTION mahak_setting_number(setting_code bigint) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN btrim(s.value) ~ '^[+-]?[0-9]+(\.[0-9]+)?$' THEN btrim(s.value)::numeric END
    FROM mahak_settings s
    WHERE s.code = setting_code AND NOT s.deleted
    ORDER BY s.row_version DESC
    LIMIT 1
$$;

-- A line's effective tax or charge percent (the rule of shared/mahak-api.md §4, as BZ and
-- MO apply it, and as the order send does): the product's -1 means none, 0 (or no value)
-- means Mahak's default (Settings 14001 tax / 14000 charge), anything else is the product's
-- own. With Settings 14008 (tax on) = 0 every percent is 0.
CREATE FUNCTION mahak_effective_percent(product_percent numeric, default_code bigint)
RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN mahak_setting_number(14008) = 0 THEN 0
        WHEN product_percent < 0 THEN 0
        WHEN product_percent IS NULL OR product_percent = 0
            THEN coalesce(mahak_setting_number(default_code), 0)
        ELSE product_percent
    END
$$;

-- The storefront's catalog: one row per variant this site may sell (a live VisitorProducts
-- link; the detail, its product and its category not deleted). Its columns are a public
-- contract (README "Storefront catalog").
CREATE VIEW shop_catalog AS
WITH stock AS (
    -- The site's stores are the stores Mahak lists to it (README: assumption).
    SELECT i.product_detail_id,
           sum(i.available) AS available,
           jsonb_object_agg(i.store_id::text, i.available ORDER BY i.store_id) AS by_store
    FROM shop_inventory i
    JOIN mahak_stores st ON st.id = i.store_id AND NOT st.deleted
    GROUP BY i.product_detail_id
)
SELECT d.id                      AS product_detail_id,
       d.code                    AS product_detail_code,
       p.id                      AS product_id,
       p.code                    AS product_code,
       p.name                    AS product_name,
       c.id                      AS category_id,
       c.name                    AS category_name,
       d.attributes,
       d.unknown_attributes,
       d.barcode,
       coalesce((SELECT u.name FROM mahak_units u
                 WHERE u.code = p.unit_code AND NOT u.deleted
                 ORDER BY u.row_version DESC LIMIT 1),
                nullif(p.unit_name, '')) AS unit_name,
       d.shop_price_level        AS price_level,
       (SELECT l.name FROM mahak_cost_level_names l
        WHERE l.code = d.shop_price_level AND NOT l.deleted
        ORDER BY l.row_version DESC LIMIT 1) AS price_level_name,
       d.shop_price              AS price,
       dd.discount,
       coalesce(d.discount_type, 0) AS discount_type,
       dd.discount_amount,
       greatest(d.shop_price - dd.discount_amount, 0) AS final_price,
       mahak_effective_percent(p.tax_percent, 14001) AS tax_percent,
       mahak_effective_percent(p.charge_percent, 14000) AS charge_percent,
       coalesce(stock.available, 0) AS stock,
       coalesce(stock.by_store, '{}'::jsonb) AS stock_by_store,
       coalesce((SELECT array_agg(pic.url ORDER BY pic.display_order NULLS LAST, pic.id)
                 FROM mahak_photo_galleries g
                 JOIN mahak_pictures pic ON pic.id = g.picture_id AND NOT pic.deleted
                 WHERE g.entity_type = 102 AND g.item_code = p.id AND NOT g.deleted
                   AND pic.url IS NOT NULL),
                '{}'::text[]) AS picture_urls,
       greatest(d.updated_at, p.updated_at) AS updated_at
FROM mahak_product_details d
JOIN mahak_products p ON p.id = d.product_id AND NOT p.deleted
LEFT JOIN mahak_categories c ON c.id = p.category_id
CROSS JOIN LATERAL (
    -- The variant's default discount: Discount<DefaultDiscountLevel> (1-4), else Discount;
    -- an amount, or a percent of the price when DiscountType is 1.
    SELECT coalesce(x.discount, 0) AS discount,
           CASE WHEN d.discount_type = 1 THEN d.shop_price * coalesce(x.discount, 0) / 100
                ELSE coalesce(x.discount, 0) END AS discount_amount
    FROM (SELECT CASE d.default_discount_level
                     WHEN 1 THEN d.discount1 WHEN 2 THEN d.discount2
                     WHEN 3 THEN d.discount3 WHEN 4 THEN d.discount4
                     ELSE d.discount END AS discount) x
) dd
LEFT JOIN stock ON stock.product_detail_id = d.id
WHERE NOT d.deleted
  AND (c.id IS NULL OR NOT c.deleted)
  AND EXISTS (SELECT 1 FROM mahak_visitor_products vp
              WHERE vp.product_detail_id = d.id AND NOT vp.deleted);

-- The price of each catalog variant for each live customer group: the group's price level
-- (SellPriceLevel 1-10; otherwise the shop's level) and its discount percent.
CREATE VIEW shop_catalog_group_prices AS
SELECT c.product_detail_id,
       g.id   AS person_group_id,
       g.name AS person_group_name,
       lvl.level AS price_level,
       (SELECT l.name FROM mahak_cost_level_names l
        WHERE l.code = lvl.level AND NOT l.deleted
        ORDER BY l.row_version DESC LIMIT 1) AS price_level_name,
       lvl.price,
       coalesce(g.discount_percent, 0) AS discount_percent,
       lvl.price * (100 - coalesce(g.discount_percent, 0)) / 100 AS group_price
FROM shop_catalog c
JOIN mahak_product_details d ON d.id = c.product_detail_id
CROSS JOIN mahak_person_groups g
CROSS JOIN LATERAL (
    SELECT l AS level,
           (ARRAY[d.price1, d.price2, d.price3, d.price4, d.price5,
                  d.price6, d.price7, d.price8, d.price9, d.price10])[l] AS price
    FROM (SELECT CASE WHEN g.sell_price_level BETWEEN 1 AND 10 THEN g.sell_price_level
                      ELSE c.price_level END AS l) s
) lvl
WHERE NOT g.deleted;
