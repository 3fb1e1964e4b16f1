-- The address a login had before an e-mail change, kept only until the alert about the change
-- has been sent to it (the account_alert job deletes the row): so someone who took over an
-- account cannot silently move its e-mail away. Never in a job payload.
CREATE TABLE email_changes (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    old_email text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
);
