-- Temporal's auto-setup creates its own databases; the shop schema is applied by the worker's
-- migrations (MIGRATE_ON_START). Nothing else to initialise here.
SELECT 1;
