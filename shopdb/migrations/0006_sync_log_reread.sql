-- Paging guards (issue 12): per sync run and entity, how many rows the pager read again
-- without pageSize (a page failed a check, or may have been cut by a server cap) and how
-- many rows it received but did not store. Both are 0 on a well-behaved server.
ALTER TABLE mahak_sync_log
    ADD COLUMN reread  integer NOT NULL DEFAULT 0,
    ADD COLUMN dropped integer NOT NULL DEFAULT 0;
