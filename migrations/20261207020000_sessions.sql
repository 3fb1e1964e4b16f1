-- Console sessions: a login in a browser. The session secret lives only in the user's
-- `__Host-` cookie; the row keeps its SHA-256 hash. A session ends at logout (the row is
-- deleted), after `accounts.session_idle_minutes` without a request, or at `expires_at`
-- (`accounts.session_absolute_hours` after login) whatever happens. Origin and browser are as
-- coarse as account activity's (/24 or /48, browser family), so the user can tell sessions apart.
CREATE TABLE sessions (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    -- The workspace the console acts in.
    workspace_id bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    origin text,
    browser text,
    PRIMARY KEY (user_id, id),
    UNIQUE (id)
);

CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_workspace ON sessions (workspace_id);
