-- People come back: who unsubscribed a person decides what brings them back. A STOP (keyword,
-- quick reply, link, admin) is undone only by a start keyword; an objection (GDPR Art. 21) by
-- any new message, which is a new opt-in. Rows unsubscribed before this count as a STOP.
ALTER TABLE subscribers
    ADD COLUMN unsubscribed_by text CHECK (unsubscribed_by IN ('stop', 'objection'));
UPDATE subscribers SET unsubscribed_by = 'stop' WHERE status = 'unsubscribed';

-- A start keyword is stored like the other intents.
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_intent_check;
ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_intent_check
    CHECK (intent IN ('none', 'stop', 'start', 'unsubscribe', 'export', 'erase'));
