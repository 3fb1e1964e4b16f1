-- The queue becomes ours (see queue/): a campaign's delivery row *is* its send job, and every
-- other kind of job lives in one typed `jobs` table. apalis-postgres's schema is emptied into
-- them and dropped; nothing queued is lost.

-- Sends: queued -> sending (claimed, leased) -> sent | failed | unknown | skipped. A retry or a
-- deferral puts the same row back to `queued` with a later `run_at`; an expired lease on a
-- `sending` row settles it `unknown` (it may have reached the person: never resent).
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
UPDATE deliveries SET status = 'queued' WHERE status = 'retrying';
ALTER TABLE deliveries
    ADD CONSTRAINT deliveries_status_check
        CHECK (status IN ('queued', 'sending', 'sent', 'skipped', 'failed', 'unknown')),
    ADD COLUMN run_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN locked_by text;

-- What a claim scans: per running campaign, its due rows in run-time order (each campaign gets
-- its share of a claim, so a huge campaign cannot starve a small one; the scan of a campaign
-- stops at its first row not due yet).
CREATE INDEX deliveries_due ON deliveries (campaign_id, run_at) WHERE status = 'queued';
-- What the lease reaper scans: only rows being sent.
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'sending';
-- Counting a campaign's outcomes walks the primary key; this index only slowed fan-out.
DROP INDEX deliveries_campaign_status;
-- The hottest table carries no foreign keys and no index by person: each key check cost every
-- fan-out insert a look-up, and each index every claim and outcome another entry. A person's
-- deliveries are found through their Page's campaigns and the primary key; only erasure
-- deletes people, and it removes their deliveries first (`moonengage_queue::sends::erase`).
ALTER TABLE deliveries
    DROP CONSTRAINT deliveries_campaign_id_fkey,
    DROP CONSTRAINT deliveries_subscriber_id_fkey;
DROP INDEX deliveries_subscriber;

-- Campaign counters are kept live by every statement that settles a delivery (fan-out skips,
-- outcome flushes, cancel, the lease reaper, erasure), so progress and completion are O(1).
-- Workers never lock a campaign row: each outcome flush appends its counts to
-- `campaign_tallies` (inserts never wait or deadlock), and the scheduler leader folds them into
-- the campaign every tick; `campaign_totals` reads both.
UPDATE campaigns c SET
    sent = d.sent, skipped = d.skipped, failed = d.failed, unknown = d.unknown
FROM (
    SELECT campaign_id,
           count(*) FILTER (WHERE status = 'sent') AS sent,
           count(*) FILTER (WHERE status = 'skipped') AS skipped,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'unknown') AS unknown
    FROM deliveries GROUP BY campaign_id
) d
WHERE c.id = d.campaign_id AND c.completed_at IS NULL;

CREATE TABLE campaign_tallies (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    sent integer NOT NULL,
    skipped integer NOT NULL,
    failed integer NOT NULL,
    unknown integer NOT NULL
);

CREATE INDEX campaign_tallies_campaign ON campaign_tallies (campaign_id);

CREATE VIEW campaign_totals AS
SELECT c.id, c.page_id, c.state, c.fanout_done, c.recipients, c.completed_at,
       c.sent + coalesce(t.sent, 0) AS sent,
       c.skipped + coalesce(t.skipped, 0) AS skipped,
       c.failed + coalesce(t.failed, 0) AS failed,
       c.unknown + coalesce(t.unknown, 0) AS unknown
FROM campaigns c
LEFT JOIN LATERAL (
    SELECT sum(sent) AS sent, sum(skipped) AS skipped, sum(failed) AS failed,
           sum(unknown) AS unknown
    FROM campaign_tallies WHERE campaign_id = c.id
) t ON true;

-- Every other kind of job; a job that succeeds is deleted. `key` is unique per kind (queuing the
-- same work twice while it waits adds nothing);
-- the payload carries ids only; `subscriber_id` names the person a job is about, so erasing
-- them removes their jobs through the foreign key, and look-ups never read payloads.
CREATE TABLE jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL,
    key text NOT NULL,
    payload jsonb NOT NULL,
    subscriber_id bigint REFERENCES subscribers (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'failed')),
    run_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    lease_until timestamptz,
    locked_by text,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (kind, key)
) WITH (fillfactor = 50);
-- A claim sets only the lease, the worker and the attempt count: no indexed column, so it is a
-- HOT update (no index entry) on a page with room, which the fill factor leaves. A claimed job
-- stays `queued`; claims pass over rows whose lease is live and take back expired ones.

CREATE INDEX jobs_due ON jobs (kind, run_at) WHERE status = 'queued';
CREATE INDEX jobs_subscriber ON jobs (subscriber_id) WHERE subscriber_id IS NOT NULL;
CREATE INDEX jobs_failed ON jobs (finished_at) WHERE status = 'failed';

-- Live worker processes: the heartbeat that keeps their leases, and the count that shares a
-- Page's rate while Redis is down.
CREATE TABLE queue_workers (
    name text PRIMARY KEY,
    kinds text[] NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now()
);

-- Upgrading: move what apalis still holds. Send jobs become queued deliveries (keeping their
-- run time and attempts); the other kinds keep their payload, and the person a job is
-- about is read out of it once, here. Then apalis's schema goes.
DO $$
BEGIN
    IF to_regclass('apalis.jobs') IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO deliveries (campaign_id, subscriber_id, status, attempts, run_at)
    SELECT k.campaign_id, k.subscriber_id, 'queued', j.attempts, j.run_at
    FROM apalis.jobs j,
         LATERAL (SELECT split_part(j.idempotency_key, ':', 1)::bigint AS campaign_id,
                         split_part(j.idempotency_key, ':', 2)::bigint AS subscriber_id) k
    WHERE j.job_type = 'send' AND j.status IN ('Pending', 'Queued', 'Failed', 'Running')
      AND j.idempotency_key IS NOT NULL
      AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = k.campaign_id)
      AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = k.subscriber_id)
    ON CONFLICT (campaign_id, subscriber_id) DO UPDATE
        SET run_at = EXCLUDED.run_at
        WHERE deliveries.status = 'queued';
    INSERT INTO jobs (kind, key, payload, subscriber_id, run_at, attempts, max_attempts)
    SELECT j.job_type, coalesce(j.idempotency_key, j.id::text),
           convert_from(j.job, 'UTF8')::jsonb,
           (SELECT s.id FROM subscribers s
            WHERE s.id = (convert_from(j.job, 'UTF8')::jsonb ->> 'subscriber_id')::bigint),
           j.run_at, j.attempts, j.max_attempts
    FROM apalis.jobs j
    WHERE j.job_type <> 'send' AND j.status IN ('Pending', 'Queued', 'Failed', 'Running')
      AND j.attempts < j.max_attempts
    ON CONFLICT (kind, key) DO NOTHING;
END $$;

DROP SCHEMA IF EXISTS apalis CASCADE;
