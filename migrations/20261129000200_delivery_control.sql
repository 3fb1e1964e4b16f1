-- Delivery control: Page pauses after rate limits, and finding a campaign's queued jobs.

-- Until when a Page sends nothing because Facebook rate-limited it (every worker honours it).
ALTER TABLE pages ADD COLUMN paused_until timestamptz;

-- A send job's idempotency key is `campaign_id:subscriber_id`; pausing, resuming and cancelling a
-- campaign touch all of its queued jobs in one statement through this index.
CREATE INDEX send_jobs_by_campaign ON apalis.jobs ((split_part(idempotency_key, ':', 1)::bigint))
    WHERE job_type = 'send';

-- Jobs queued so far by the fan-out, which paces each job's run time at the Page's rate.
ALTER TABLE campaigns ADD COLUMN queued integer NOT NULL DEFAULT 0;
