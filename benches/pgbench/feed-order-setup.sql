-- Tables for the change-ordering pgbench scripts: 1,000 integrations and an events table.
DROP TABLE IF EXISTS bi; DROP TABLE IF EXISTS be;
CREATE TABLE bi (id int primary key, version bigint not null);
INSERT INTO bi SELECT g, 1 FROM generate_series(1,1000) g;
CREATE TABLE be (id bigserial primary key, kind text, time timestamptz, actor text, integration_id int, details text);
