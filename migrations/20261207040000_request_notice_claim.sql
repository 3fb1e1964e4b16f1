-- The one message a request sends its person (an erasure's confirmation, an export's link) is
-- claimed, in its own commit, before it is sent: a run repeated after a crash (the erasure's
-- transaction, say, rolled back by a SIGKILL after the message went) sends it no second time.
ALTER TABLE dsr_requests ADD COLUMN notice_claimed_at timestamptz;
