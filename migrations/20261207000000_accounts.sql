-- Accounts: the businesses that use MoonEngage. A workspace owns Pages (and through them
-- subscribers, campaigns, deliveries, requests and exports); people log in as users, belong to
-- workspaces with a role, and reach the API with personal tokens or the console with sessions.
-- `workspace_id` leads the keys of tenant tables, so the schema can be distributed by workspace.
-- Secrets (session ids, tokens, invitation links) are stored only as SHA-256 hashes.

CREATE TABLE workspaces (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Set when an owner cancels: from then nobody gets in, and the cancellation job deletes it.
    cancelled_at timestamptz
);

-- A person who logs in. The e-mail is the login (compared lower-cased); the password is an
-- argon2id PHC string, NULL until the person sets one through their invitation link.
-- Operators are MoonEngage staff: they keep the platform's policy and breach register, and see
-- a workspace's data only through a maintenance grant its owner gave them.
CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL CHECK (email = lower(btrim(email)) AND email LIKE '%_@_%'),
    password_hash text,
    is_operator boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz,
    UNIQUE (email)
);

CREATE TABLE memberships (
    workspace_id bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);

CREATE INDEX memberships_user ON memberships (user_id);

-- Personal API tokens, for people who choose no cookies and for scripts: one workspace, a role
-- no higher than their owner's there, an expiry. Shown once; only the hash is kept.
CREATE TABLE api_tokens (
    workspace_id bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    token_hash bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at timestamptz,
    PRIMARY KEY (workspace_id, id),
    UNIQUE (id)
);

CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- The global admin tokens are replaced by personal tokens of a workspace's members.
DROP TABLE admin_tokens;

-- Tenant data: every Page belongs to one workspace, and so does everything of the Page. Rows
-- that existed before accounts go to one workspace named "Default" (give it an owner with
-- `moonengage workspace add-owner`).
ALTER TABLE pages ADD COLUMN workspace_id bigint REFERENCES workspaces (id) ON DELETE CASCADE;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pages) THEN
        INSERT INTO workspaces (name) VALUES ('Default');
        UPDATE pages SET workspace_id = (SELECT min(id) FROM workspaces);
    END IF;
END $$;
ALTER TABLE pages ALTER COLUMN workspace_id SET NOT NULL;
CREATE UNIQUE INDEX pages_workspace ON pages (workspace_id, id);

-- A subscriber's or campaign's workspace is its Page's: filled in on insert, held to it by a
-- composite foreign key (and with it, a Page cannot move to another workspace under its rows).
CREATE FUNCTION fill_workspace_from_page() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.workspace_id IS NULL THEN
        SELECT workspace_id INTO NEW.workspace_id FROM pages WHERE id = NEW.page_id;
    END IF;
    RETURN NEW;
END $$;

ALTER TABLE subscribers ADD COLUMN workspace_id bigint;
UPDATE subscribers s SET workspace_id = p.workspace_id FROM pages p WHERE p.id = s.page_id;
ALTER TABLE subscribers ALTER COLUMN workspace_id SET NOT NULL;
ALTER TABLE subscribers ADD FOREIGN KEY (workspace_id, page_id)
    REFERENCES pages (workspace_id, id) ON DELETE CASCADE;
CREATE UNIQUE INDEX subscribers_workspace ON subscribers (workspace_id, id);
CREATE TRIGGER subscribers_workspace BEFORE INSERT ON subscribers
    FOR EACH ROW EXECUTE FUNCTION fill_workspace_from_page();

ALTER TABLE campaigns ADD COLUMN workspace_id bigint;
UPDATE campaigns c SET workspace_id = p.workspace_id FROM pages p WHERE p.id = c.page_id;
ALTER TABLE campaigns ALTER COLUMN workspace_id SET NOT NULL;
ALTER TABLE campaigns ADD FOREIGN KEY (workspace_id, page_id)
    REFERENCES pages (workspace_id, id) ON DELETE CASCADE;
CREATE UNIQUE INDEX campaigns_workspace ON campaigns (workspace_id, id);
CREATE TRIGGER campaigns_workspace BEFORE INSERT ON campaigns
    FOR EACH ROW EXECUTE FUNCTION fill_workspace_from_page();

-- A data-subject request about a Page's subscriber belongs to the Page's workspace. One that
-- came through Facebook's data-deletion callback is about the person across every Page of the
-- app, so it belongs to the platform (NULL) and its operators.
ALTER TABLE dsr_requests ADD COLUMN workspace_id bigint REFERENCES workspaces (id) ON DELETE CASCADE;
CREATE INDEX dsr_requests_workspace ON dsr_requests (workspace_id, id);

-- Security events each user can see about their own account (logins, failed logins, changes),
-- with a coarse origin only: the IP truncated to /24 (IPv4) or /48 (IPv6) and the browser
-- family. Kept `retention.account_activity_days` (90) and used for nothing else.
CREATE TABLE account_events (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    workspace_id bigint REFERENCES workspaces (id) ON DELETE CASCADE,
    kind text NOT NULL,
    origin text,
    browser text,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
);

CREATE INDEX account_events_at ON account_events (at);
