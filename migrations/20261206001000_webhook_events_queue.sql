-- `webhook_events` is its own queue: an unprocessed row is the job of processing it. Workers
-- claim due rows in batches (`FOR UPDATE SKIP LOCKED`, leased to the worker), act on a batch
-- in one transaction and mark it processed in the same transaction; a failed event is retried
-- after a backoff (`run_at`) and, after `queue.max_attempts`, parked as failed (`failed_at`,
-- sender still sealed until retention removes the row). No `jobs` row per event any more.
ALTER TABLE webhook_events
    ADD COLUMN run_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN locked_by text,
    ADD COLUMN failed_at timestamptz,
    ADD COLUMN last_error text,
    ADD CHECK (failed_at IS NULL OR processed_at IS NULL);

-- The pending `webhook` jobs move onto their events: attempts, retry time, failure.
UPDATE webhook_events e SET
    attempts = j.attempts,
    run_at = j.run_at,
    failed_at = CASE WHEN j.status = 'failed' THEN coalesce(j.finished_at, now()) END,
    last_error = j.last_error
FROM jobs j
WHERE j.kind = 'webhook' AND j.key = e.id::text AND e.processed_at IS NULL;
-- An unprocessed event without a job had its job fail for good and pruned: it stays failed.
UPDATE webhook_events e SET failed_at = now(), last_error = 'its job failed for good'
WHERE e.processed_at IS NULL AND e.failed_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'webhook' AND j.key = e.id::text);
DELETE FROM jobs WHERE kind = 'webhook';

-- What a claim scans: events to process, in the order received.
CREATE INDEX webhook_events_queued ON webhook_events (id)
    WHERE processed_at IS NULL AND failed_at IS NULL;
-- A person's earlier events still to process (a failed one no longer holds the later back).
DROP INDEX webhook_events_sender_pending;
CREATE INDEX webhook_events_sender_pending ON webhook_events (sender_index, event_at, id)
    WHERE processed_at IS NULL AND failed_at IS NULL;
-- What retention scans for failed events.
CREATE INDEX webhook_events_failed ON webhook_events (failed_at) WHERE failed_at IS NOT NULL;
