-- The send queue's two candidate layouts side by side (issue: "measure it against a separate lean
-- send table"): A, the delivery row is the send job (what the queue uses); B, a lean `sends`
-- table whose claim touches no indexed column, and a delivery row written when a send settles.
-- Each runs the same work on 100,000 recipients: fan-out, then claims and settles of 200 rows
-- at a time (a transaction each, as the workers do), all sent.
--   psql -X -q -v n=100000 -f bench/send-table.sql postgres://postgres@127.0.0.1:5432/postgres
\set ON_ERROR_STOP on
DROP DATABASE IF EXISTS bench_send_table WITH (FORCE);
CREATE DATABASE bench_send_table;
\c bench_send_table
\timing on

CREATE TABLE a_deliveries (
    campaign_id bigint NOT NULL, subscriber_id bigint NOT NULL, status text NOT NULL,
    reason text, message_id text, attempts int NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(), lease_until timestamptz, locked_by text,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, subscriber_id));
CREATE INDEX a_due ON a_deliveries (campaign_id, run_at) WHERE status = 'queued';
CREATE INDEX a_leased ON a_deliveries (lease_until) WHERE status = 'sending';

CREATE TABLE b_sends (
    campaign_id bigint NOT NULL, subscriber_id bigint NOT NULL, attempts int NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(), lease_until timestamptz, locked_by text,
    PRIMARY KEY (campaign_id, subscriber_id)) WITH (fillfactor = 50);
CREATE INDEX b_due ON b_sends (campaign_id, run_at);
CREATE TABLE b_deliveries (
    campaign_id bigint NOT NULL, subscriber_id bigint NOT NULL, status text NOT NULL,
    reason text, message_id text, attempts int NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, subscriber_id));

CREATE PROCEDURE a_drain() LANGUAGE plpgsql AS $$
DECLARE claimed int;
BEGIN
  LOOP
    WITH picked AS (
        SELECT campaign_id, subscriber_id FROM a_deliveries
        WHERE campaign_id = 1 AND status = 'queued' AND run_at <= now()
        ORDER BY run_at LIMIT 200 FOR UPDATE SKIP LOCKED),
    c AS (
        UPDATE a_deliveries d SET status = 'sending', attempts = d.attempts + 1,
            lease_until = now() + interval '15 s', locked_by = 'w', updated_at = now()
        FROM picked WHERE (d.campaign_id, d.subscriber_id) = (picked.campaign_id, picked.subscriber_id)
        RETURNING d.subscriber_id)
    SELECT count(*) INTO claimed FROM c;
    COMMIT;
    EXIT WHEN claimed = 0;
    UPDATE a_deliveries SET status = 'sent', message_id = 'm_0123456789abcdef012345',
        lease_until = NULL, updated_at = now()
    WHERE campaign_id = 1 AND locked_by = 'w' AND lease_until IS NOT NULL AND status = 'sending';
    COMMIT;
  END LOOP;
END $$;

CREATE PROCEDURE b_drain() LANGUAGE plpgsql AS $$
DECLARE claimed int;
BEGIN
  LOOP
    WITH picked AS (
        SELECT campaign_id, subscriber_id FROM b_sends
        WHERE campaign_id = 1 AND run_at <= now() AND (lease_until IS NULL OR lease_until < now())
        ORDER BY run_at LIMIT 200 FOR UPDATE SKIP LOCKED),
    c AS (
        UPDATE b_sends s SET attempts = s.attempts + 1, lease_until = now() + interval '15 s',
            locked_by = 'w'
        FROM picked WHERE (s.campaign_id, s.subscriber_id) = (picked.campaign_id, picked.subscriber_id)
        RETURNING s.subscriber_id)
    SELECT count(*) INTO claimed FROM c;
    COMMIT;
    EXIT WHEN claimed = 0;
    WITH done AS (
        DELETE FROM b_sends WHERE campaign_id = 1 AND locked_by = 'w' AND lease_until > now()
        RETURNING campaign_id, subscriber_id, attempts)
    INSERT INTO b_deliveries (campaign_id, subscriber_id, status, message_id, attempts)
    SELECT campaign_id, subscriber_id, 'sent', 'm_0123456789abcdef012345', attempts FROM done;
    COMMIT;
  END LOOP;
END $$;

\echo A: fan-out (deliveries are the jobs)
INSERT INTO a_deliveries (campaign_id, subscriber_id, status, run_at)
SELECT 1, g, 'queued', now() FROM generate_series(1, :n) g;
\echo B: fan-out (lean sends)
INSERT INTO b_sends (campaign_id, subscriber_id, run_at)
SELECT 1, g, now() FROM generate_series(1, :n) g;
ANALYZE;
CHECKPOINT;
\echo A: claim and settle every send, 200 at a time
CALL a_drain();
\echo B: claim and settle every send, 200 at a time
CALL b_drain();
SELECT (SELECT count(*) FROM a_deliveries WHERE status = 'sent') AS a_sent,
       (SELECT count(*) FROM b_deliveries WHERE status = 'sent') AS b_sent;
\c postgres
DROP DATABASE bench_send_table WITH (FORCE);
