-- Events of one person are processed in the order they happened: a webhook job first takes the
-- sender's earlier unprocessed events (found by this keyed blind index of Page and sender, never
-- the PSID), so "hi" then "STOP" in one delivery can never end subscribed. Cleared with the
-- sealed sender once the event is processed.
ALTER TABLE webhook_events ADD COLUMN sender_index bytea;

CREATE INDEX webhook_events_sender_pending ON webhook_events (sender_index, event_at, id)
    WHERE processed_at IS NULL;
