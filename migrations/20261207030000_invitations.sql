-- Invitations: how a person joins a workspace (and how a new owner sets a first password). The
-- link's secret is minted when its e-mail is sent; only its SHA-256 hash is kept, replaced by
-- each new e-mail, so no secret is ever stored. A link works until `expires_at`
-- (`accounts.invitation_hours`) and once (`accepted_at`).
CREATE TABLE invitations (
    workspace_id bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    email text NOT NULL CHECK (email = lower(btrim(email)) AND email LIKE '%_@_%'),
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    token_hash bytea UNIQUE,
    invited_by bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    accepted_at timestamptz,
    PRIMARY KEY (workspace_id, id),
    UNIQUE (id)
);
