-- A management change as privint wrote it before event ids followed commit order: no lock.
\set id random(1, 1000)
BEGIN;
SELECT version FROM bi WHERE id = :id FOR UPDATE;
UPDATE bi SET version = version + 1 WHERE id = :id;
INSERT INTO be (kind, time, actor, integration_id, details) VALUES ('integration.updated', now(), 'bench', :id, '{}');
NOTIFY privint_events;
COMMIT;
