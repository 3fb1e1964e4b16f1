-- Privacy: data exports (GDPR Art. 15/20), served once through an expiring link.

-- One export per request. The JSON is sealed; the link's token is random and only its SHA-256
-- hash is stored, so the table alone cannot be turned into working links. The row is deleted
-- when the export is downloaded, and erased with the person it is about.
CREATE TABLE exports (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dsr_request_id bigint NOT NULL UNIQUE REFERENCES dsr_requests (id) ON DELETE CASCADE,
    subscriber_id bigint REFERENCES subscribers (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    payload bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX exports_subscriber ON exports (subscriber_id) WHERE subscriber_id IS NOT NULL;
CREATE INDEX exports_expires ON exports (expires_at);
