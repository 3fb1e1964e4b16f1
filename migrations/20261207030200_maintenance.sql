-- Maintenance access: an owner lets a named MoonEngage operator (users.is_operator) into the
-- workspace for a limited time (`accounts.maintenance_hours` unless the owner says otherwise),
-- revocable at any moment. The operator's token is bound to the grant (api_tokens.grant_id)
-- and works only while the grant is live. Owners are e-mailed when it is granted, first used and
-- ended (`ended_notified_at`: the leader's check tells an expiry once; a revocation at once).
CREATE TABLE maintenance_grants (
    workspace_id bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    operator_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    granted_by bigint REFERENCES users (id) ON DELETE SET NULL,
    reason text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    first_used_at timestamptz,
    ended_notified_at timestamptz,
    PRIMARY KEY (workspace_id, id),
    UNIQUE (id)
);

CREATE INDEX maintenance_grants_ending ON maintenance_grants (expires_at)
    WHERE ended_notified_at IS NULL;

ALTER TABLE api_tokens ADD COLUMN grant_id bigint
    REFERENCES maintenance_grants (id) ON DELETE CASCADE;
CREATE INDEX api_tokens_grant ON api_tokens (grant_id) WHERE grant_id IS NOT NULL;
