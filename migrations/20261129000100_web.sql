-- The web process: received webhook events, data-subject requests and admin API tokens.

-- One row per messaging event a person caused, kept minimal: the sender is sealed and erased as
-- soon as a worker has processed the event; what the person wrote is never stored. The hash of
-- the message id is unique, so an event Facebook delivers again is not stored (nor acted on)
-- again; processed rows stay only for that purpose until retention removes them.
CREATE TABLE webhook_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mid_hash bytea NOT NULL UNIQUE,
    page_fb_id text NOT NULL,
    psid bytea,
    kind text NOT NULL CHECK (kind IN ('message', 'postback')),
    intent text NOT NULL CHECK (intent IN ('none', 'stop', 'unsubscribe', 'export', 'erase')),
    event_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    CHECK ((psid IS NULL) = (processed_at IS NOT NULL))
);

CREATE INDEX webhook_events_processed ON webhook_events (processed_at)
    WHERE processed_at IS NOT NULL;

-- A data-subject request (GDPR Art. 15-21). The audit columns hold no personal data; who the
-- request is about is sealed in `subject_ref` and removed when the request completes.
CREATE TABLE dsr_requests (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type text NOT NULL CHECK (type IN ('export', 'erasure', 'objection')),
    channel text NOT NULL CHECK (channel IN ('messenger', 'facebook_callback', 'admin')),
    status text NOT NULL DEFAULT 'received'
        CHECK (status IN ('received', 'processing', 'completed', 'refused')),
    received_at timestamptz NOT NULL DEFAULT now(),
    due_at timestamptz NOT NULL,
    completed_at timestamptz,
    outcome text,
    confirmation_code text NOT NULL UNIQUE CHECK (confirmation_code ~ '^[A-Za-z0-9]+$'),
    subject_ref bytea
);

CREATE INDEX dsr_requests_open ON dsr_requests (due_at) WHERE status IN ('received', 'processing');

-- Bearer tokens of the admin API, stored as SHA-256 hashes (the token is shown once).
-- Revoking one (logging out) takes effect on the next request.
CREATE TABLE admin_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_used_at timestamptz
);
