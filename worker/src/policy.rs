//! The policy-notice job: tells one person of a privacy-policy version (see [`crate::notice`]).
//! The claim on `subscribers.policy_version_notified` makes it once per person and version.

use moonengage_privacy::policy::{self, PolicyNoticeJob};
use moonengage_queue::JobError;
use moonengage_queue::run::Run;
use sqlx::PgPool;

use crate::env::Env;
use crate::notice::{self, Notice};

impl Run<Env> for PolicyNoticeJob {
    async fn run(self, env: &Env) -> Result<(), JobError> {
        notice::deliver(env, &self).await
    }
}

impl Notice for PolicyNoticeJob {
    type Claimed = policy::Claimed;

    fn subscriber_id(&self) -> i64 {
        self.subscriber_id
    }

    async fn claim(&self, pool: &PgPool) -> anyhow::Result<Option<policy::Claimed>> {
        policy::claim(pool, self.subscriber_id, self.policy_version_id).await
    }

    async fn release(&self, pool: &PgPool, claimed: &policy::Claimed) -> anyhow::Result<()> {
        policy::release(
            pool,
            self.subscriber_id,
            self.policy_version_id,
            claimed.previous,
        )
        .await
    }

    fn text(
        &self,
        page_name: &str,
        claimed: &policy::Claimed,
        export: &str,
        erase: &str,
    ) -> String {
        policy::notice_text(page_name, claimed, export, erase)
    }
}
