-- A management change as privint writes it (lock the row, bump its version, one event, NOTIFY),
-- with the advisory lock that hands out event ids in commit order (see src/store/events.rs).
\set id random(1, 1000)
BEGIN;
SELECT version FROM bi WHERE id = :id FOR UPDATE;
UPDATE bi SET version = version + 1 WHERE id = :id;
SELECT pg_advisory_xact_lock(8102099357864587265);
INSERT INTO be (kind, time, actor, integration_id, details) VALUES ('integration.updated', now(), 'bench', :id, '{}');
NOTIFY privint_events;
COMMIT;
