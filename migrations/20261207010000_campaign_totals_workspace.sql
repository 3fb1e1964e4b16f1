-- A campaign's totals carry its workspace, so reading a campaign's progress is scoped to the
-- caller's workspace in the same look-up (another workspace's campaign is simply not found).
CREATE OR REPLACE VIEW campaign_totals AS
SELECT c.id, c.page_id, c.state, c.fanout_done, c.recipients, c.completed_at,
       c.sent + coalesce(t.sent, 0) AS sent,
       c.skipped + coalesce(t.skipped, 0) AS skipped,
       c.failed + coalesce(t.failed, 0) AS failed,
       c.unknown + coalesce(t.unknown, 0) AS unknown,
       c.workspace_id
FROM campaigns c
LEFT JOIN LATERAL (
    SELECT sum(sent) AS sent, sum(skipped) AS skipped, sum(failed) AS failed,
           sum(unknown) AS unknown
    FROM campaign_tallies WHERE campaign_id = c.id
) t ON true;
