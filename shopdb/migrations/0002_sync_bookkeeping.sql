-- The sync's own bookkeeping: cursors, id mapping, run history and quarantined rows.

-- One cursor per Mahak entity: the highest RowVersion stored. Advanced in the same
-- transaction as the rows it covers, and never backwards.
CREATE TABLE mahak_sync_state (
    entity           text PRIMARY KEY,
    last_row_version bigint NOT NULL DEFAULT 0 CHECK (last_row_version >= 0),
    last_synced_at   timestamptz
);

-- Shop id <-> Mahak id, one-to-one per entity (products, product details, people, ...).
CREATE TABLE mahak_mapping (
    entity     text NOT NULL,
    shop_id    bigint NOT NULL,
    mahak_id   bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, shop_id),
    UNIQUE (entity, mahak_id)
);

-- Sync history for operators: one row per sync run and entity.
CREATE TABLE mahak_sync_log (
    id            bigserial PRIMARY KEY,
    run_id        text NOT NULL,
    entity        text NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    fetched       integer NOT NULL DEFAULT 0,
    inserted      integer NOT NULL DEFAULT 0,
    updated       integer NOT NULL DEFAULT 0,
    unchanged     integer NOT NULL DEFAULT 0,
    deleted       integer NOT NULL DEFAULT 0,
    dead_lettered integer NOT NULL DEFAULT 0,
    error         text,
    UNIQUE (run_id, entity)
);
CREATE INDEX mahak_sync_log_started_idx ON mahak_sync_log (started_at DESC);

-- Rows Mahak sent that could not be stored (invalid, or violating a constraint). Re-seeing
-- the same row version bumps last_seen/seen_count instead of adding a row; a later valid
-- version of the same record resolves it ('superseded').
CREATE TABLE mahak_dead_letters (
    id          bigserial PRIMARY KEY,
    entity      text NOT NULL,
    mahak_id    bigint,
    row_version bigint,
    payload     jsonb NOT NULL,
    reason      text NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    seen_count  integer NOT NULL DEFAULT 1,
    last_run_id text,
    resolved    boolean NOT NULL DEFAULT false,
    resolved_at timestamptz,
    resolution  text,
    -- Rows without a usable id are told apart by their payload.
    dedup_key   text GENERATED ALWAYS AS (
        coalesce(mahak_id::text, 'payload:' || md5(payload::text))
        || ':' || coalesce(row_version::text, '')
    ) STORED,
    UNIQUE (entity, dedup_key)
);
CREATE INDEX mahak_dead_letters_open_idx ON mahak_dead_letters (entity, mahak_id) WHERE NOT resolved;
CREATE INDEX mahak_dead_letters_last_seen_idx ON mahak_dead_letters (last_seen DESC);
