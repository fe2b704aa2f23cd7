-- Run once by the postgres image on an empty data directory (docker-entrypoint-initdb.d):
-- a read-only role for Grafana's "ringback: calls" dashboard. ringback's migrations create the
-- tables later, as `ringback`; the default privileges give Grafana SELECT on each of them
-- (partitions included) as it appears, and nothing else.
CREATE ROLE grafana LOGIN PASSWORD 'grafana';
GRANT CONNECT ON DATABASE ringback TO grafana;
GRANT USAGE ON SCHEMA public TO grafana;
ALTER DEFAULT PRIVILEGES FOR ROLE ringback IN SCHEMA public GRANT SELECT ON TABLES TO grafana;
ALTER ROLE grafana SET statement_timeout = '30s';
ALTER ROLE grafana SET default_transaction_read_only = on;
