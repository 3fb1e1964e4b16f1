//! The notify job: a one-line service message to a person, such as the confirmation that they
//! are unsubscribed, sent as a notice ([`crate::notice`]): a `RESPONSE` inside the window their
//! own message opened, at the Page's rate, once. The claim on
//! `subscribers.unsubscribe_confirmation_owed` makes it once however often the job runs.

use moonengage_core::jobs::{NotifyJob, NotifyKind};
use moonengage_core::subscribers;
use moonengage_queue::JobError;
use moonengage_queue::run::Run;
use sqlx::PgPool;

use crate::env::Env;
use crate::notice::{self, Notice};

impl Run<Env> for NotifyJob {
    async fn run(self, env: &Env) -> Result<(), JobError> {
        notice::deliver(env, &self).await
    }
}

impl Notice for NotifyJob {
    type Claimed = ();

    fn subscriber_id(&self) -> i64 {
        self.subscriber_id
    }

    async fn claim(&self, pool: &PgPool) -> anyhow::Result<Option<()>> {
        let claimed = match self.kind {
            NotifyKind::Unsubscribed => {
                subscribers::confirmation::claim(pool, self.subscriber_id).await?
            }
        };
        Ok(claimed.then_some(()))
    }

    async fn release(&self, pool: &PgPool, (): &()) -> anyhow::Result<()> {
        match self.kind {
            NotifyKind::Unsubscribed => {
                subscribers::confirmation::release(pool, self.subscriber_id).await
            }
        }
    }

    fn text(&self, page_name: &str, (): &(), _export: &str, _erase: &str) -> String {
        match self.kind {
            NotifyKind::Unsubscribed => {
                format!("You are unsubscribed: {page_name} will send you no more messages.")
            }
        }
    }
}
