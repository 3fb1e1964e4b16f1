-- Notifications: privacy-policy versions people are told of, and the admin alert of requests
-- close to their deadline.

-- A published version of the privacy policy. Ids grow with publication, so "told of version N"
-- also means "told of everything before it".
CREATE TABLE policy_versions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version text NOT NULL UNIQUE,
    summary text NOT NULL,
    url text NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now()
);

-- The latest version each person was told of; claimed atomically before the notice is sent,
-- so concurrent jobs (publication and a reply) cannot tell anybody twice.
ALTER TABLE subscribers
    ADD COLUMN policy_version_notified bigint REFERENCES policy_versions (id);

-- When admins were told that an open request is close to its deadline (once per request).
ALTER TABLE dsr_requests ADD COLUMN due_soon_notified_at timestamptz;
