-- The application's schema. Personal fields are sealed (see core/src/crypto): a column holding
-- one is `bytea` and never carries the value in clear. Look-ups by PSID go through a blind index.

-- Data keys for envelope encryption, each wrapped with age to the configured recipients.
CREATE TABLE data_keys (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wrapped bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);

-- A business's Facebook Page. Its id and name are public business data; its token is a secret.
CREATE TABLE pages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fb_page_id text NOT NULL UNIQUE,
    name text NOT NULL,
    access_token bytea NOT NULL,
    send_rate integer NOT NULL DEFAULT 250 CHECK (send_rate > 0),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'halted')),
    halted_reason text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A person who opted in by messaging a Page. Minimal data: no name unless configured, and
-- consent evidence that proves the opt-in without keeping what the person wrote.
CREATE TABLE subscribers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id bigint NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    psid_index bytea NOT NULL,
    psid bytea NOT NULL,
    first_name bytea,
    status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'unsubscribed', 'unreachable')),
    opted_in_at timestamptz NOT NULL,
    consent_source text NOT NULL,
    consent_mid_hash bytea,
    last_interaction_at timestamptz NOT NULL,
    unsubscribed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (page_id, psid_index)
);

CREATE INDEX subscribers_page_id ON subscribers (page_id, id);

-- A bulk message of one Page. Counters are filled from `deliveries` when the campaign ends, so
-- they outlive the delivery rows that retention removes.
CREATE TABLE campaigns (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    page_id bigint NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
    name text NOT NULL,
    template text NOT NULL,
    state text NOT NULL DEFAULT 'draft'
        CHECK (state IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')),
    scheduled_at timestamptz,
    -- Fan-out progress: the highest subscriber id already turned into a job or a skip.
    fanout_cursor bigint NOT NULL DEFAULT 0,
    fanout_done boolean NOT NULL DEFAULT false,
    recipients integer NOT NULL DEFAULT 0,
    sent integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    unknown integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    completed_at timestamptz
);

CREATE INDEX campaigns_due ON campaigns (scheduled_at) WHERE state = 'scheduled';
CREATE INDEX campaigns_running ON campaigns (id) WHERE state IN ('running', 'paused');

-- One row per campaign and person: the claim that makes a send happen at most once, then its
-- outcome. `reason` says why a person was skipped or what class of error stopped the send.
CREATE TABLE deliveries (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    subscriber_id bigint NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    status text NOT NULL CHECK (status IN ('sending', 'retrying', 'sent', 'skipped', 'failed', 'unknown')),
    reason text,
    message_id text,
    attempts integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, subscriber_id)
);

CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);
CREATE INDEX deliveries_campaign_status ON deliveries (campaign_id, status);
