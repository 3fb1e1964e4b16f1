-- The breach register (GDPR Art. 33/34): incidents admins declare, the 72-hour deadline to
-- inform the supervisory authority, and the notices owed to the people an incident affects.

-- A personal-data breach. No personal data: what happened is described in the admins' words
-- (categories, counts), never by naming anybody. The authority must be informed within 72 hours
-- of `detected_at`; `status` moves open -> reported -> closed (or open -> closed).
CREATE TABLE incidents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detected_at timestamptz NOT NULL,
    categories text[] NOT NULL CHECK (
        cardinality(categories) > 0
        AND categories <@ ARRAY['messenger_ids', 'first_names', 'consent_evidence',
                                'delivery_records', 'data_requests', 'page_tokens']
    ),
    people_affected integer NOT NULL CHECK (people_affected >= 0),
    description text NOT NULL,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'reported', 'closed')),
    declared_at timestamptz NOT NULL DEFAULT now(),
    reported_at timestamptz,
    closed_at timestamptz,
    -- When admins were told the deadline nears (once per incident).
    deadline_notified_at timestamptz,
    -- When an admin decided to tell the people affected, and which Page's subscribers they are
    -- (NULL with a decision: everybody we hold data about).
    notice_decided_at timestamptz,
    notice_page_id bigint REFERENCES pages (id) ON DELETE SET NULL
);

CREATE INDEX incidents_unreported ON incidents (detected_at) WHERE status = 'open';

-- Who is owed an incident's notice, until they are told: at once inside their 24-hour window,
-- otherwise with the reply to their next message. Erasing a person removes their rows.
CREATE TABLE incident_notices (
    incident_id bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    subscriber_id bigint NOT NULL REFERENCES subscribers (id) ON DELETE CASCADE,
    told_at timestamptz,
    PRIMARY KEY (incident_id, subscriber_id)
);

CREATE INDEX incident_notices_pending ON incident_notices (subscriber_id) WHERE told_at IS NULL;
