//! The incident-notice job: tells one person affected by a personal-data breach what happened
//! (see [`crate::notice`]). The claim on `incident_notices.told_at` makes it once per person and
//! incident.

use moonengage_privacy::incidents::{self, IncidentNoticeJob};
use moonengage_queue::JobError;
use moonengage_queue::run::Run;
use sqlx::PgPool;

use crate::env::Env;
use crate::notice::{self, Notice};

impl Run<Env> for IncidentNoticeJob {
    async fn run(self, env: &Env) -> Result<(), JobError> {
        notice::deliver(env, &self).await
    }
}

impl Notice for IncidentNoticeJob {
    type Claimed = incidents::Claimed;

    fn subscriber_id(&self) -> i64 {
        self.subscriber_id
    }

    async fn claim(&self, pool: &PgPool) -> anyhow::Result<Option<incidents::Claimed>> {
        incidents::claim(pool, self.incident_id, self.subscriber_id).await
    }

    async fn release(&self, pool: &PgPool, _claimed: &incidents::Claimed) -> anyhow::Result<()> {
        incidents::release(pool, self.incident_id, self.subscriber_id).await
    }

    fn text(
        &self,
        page_name: &str,
        claimed: &incidents::Claimed,
        export: &str,
        erase: &str,
    ) -> String {
        incidents::notice_text(page_name, claimed, export, erase)
    }
}
