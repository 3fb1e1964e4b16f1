-- Lifecycle: who paused a campaign, what is kept of people retention deleted after they
-- unsubscribed, and export links waiting for the person's next message.

-- Who paused a campaign last: an admin, or its Page's halt (read while the campaign is paused;
-- resuming clears it). Resuming the Page resumes only the campaigns its halt paused. Campaigns
-- paused before this migration are attributed to the halt when their Page is halted now,
-- otherwise to an admin.
ALTER TABLE campaigns ADD COLUMN paused_by text CHECK (paused_by IN ('admin', 'page_halt'));
UPDATE campaigns c
SET paused_by = CASE WHEN p.status = 'halted' THEN 'page_halt' ELSE 'admin' END
FROM pages p
WHERE p.id = c.page_id AND c.state = 'paused';

-- People retention deleted after they unsubscribed: only the blind index of their PSID on the
-- Page is kept (no PSID, no name, no date of theirs beyond when the row was written), so a
-- re-import or a new opt-in of the same person stays unsubscribed.
CREATE TABLE suppressions (
    page_id bigint NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    psid_index bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (page_id, psid_index)
);

-- An export whose link could not be sent (the person was outside their 24-hour window): the
-- link goes with the reply to their next message, or when an admin re-issues it.
ALTER TABLE exports ADD COLUMN link_waiting boolean NOT NULL DEFAULT false;
CREATE INDEX exports_link_waiting ON exports (subscriber_id) WHERE link_waiting;

-- Every way a person is added (import, opt-in by message, seed) meets the suppression: someone
-- who said STOP and whose data retention deleted comes back unsubscribed.
CREATE FUNCTION subscribers_keep_suppressed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM suppressions
               WHERE page_id = NEW.page_id AND psid_index = NEW.psid_index) THEN
        NEW.status := 'unsubscribed';
        NEW.unsubscribed_at := coalesce(NEW.unsubscribed_at, now());
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER subscribers_keep_suppressed BEFORE INSERT ON subscribers
    FOR EACH ROW EXECUTE FUNCTION subscribers_keep_suppressed();

-- Facebook allows 300 messages per second per Page: no Page is set faster.
UPDATE pages SET send_rate = 300 WHERE send_rate > 300;
ALTER TABLE pages ADD CONSTRAINT pages_send_rate_max CHECK (send_rate <= 300);
