-- The confirmation of an unsubscribe is owed once: the unsubscribe sets this with the job it
-- queues, and the job claims it (in its own commit) before it sends, so a job run again after
-- its worker died never confirms twice.
ALTER TABLE subscribers ADD COLUMN unsubscribe_confirmation_owed boolean NOT NULL DEFAULT false;
UPDATE subscribers SET unsubscribe_confirmation_owed = true
WHERE id IN (SELECT subscriber_id FROM jobs WHERE kind = 'notify' AND status = 'queued');
