//! What every job of a worker process shares: connections, keys, the Graph API client, the
//! rate limiter, the mailer and the settings. One value, built once, handed to every kind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::mailer::Mailer;
use moonengage_core::settings::Settings;
use moonengage_core::template::Template;
use moonengage_messenger as messenger;
use moonengage_messenger::limiter::RateLimiter;
use moonengage_privacy::crypto::Keyring;
use moonengage_privacy::unsubscribe::UnsubscribeSigner;
use sqlx::PgPool;

use crate::pacer::Pacer;

/// The worker's shared environment.
pub struct Env {
    /// The database and its queue.
    pub(crate) pool: PgPool,
    /// Opens sealed PSIDs, names and Page tokens; seals new ones.
    pub(crate) keyring: Keyring,
    /// The Graph API.
    pub(crate) client: messenger::Client,
    /// Signs the unsubscribe token of every message.
    pub(crate) signer: UnsubscribeSigner,
    /// Each Page's send rate, shared with every worker.
    pub(crate) limiter: Arc<RateLimiter>,
    /// Campaign sends of a Page waiting together share one reservation.
    pub(crate) pacer: Pacer,
    /// Admin e-mail; `None` when it is off.
    pub(crate) mailer: Option<Mailer>,
    /// Where links to this deployment point.
    pub(crate) public_base_url: String,
    /// Everything configured.
    pub(crate) settings: Settings,
    /// Compiled campaign templates: a campaign's template is fixed once it runs.
    templates: Mutex<HashMap<i64, Arc<Template>>>,
}

impl Env {
    /// Bundles what the jobs need.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        pool: PgPool,
        keyring: Keyring,
        client: messenger::Client,
        signer: UnsubscribeSigner,
        limiter: Arc<RateLimiter>,
        mailer: Option<Mailer>,
        settings: Settings,
    ) -> Env {
        Env {
            public_base_url: settings.public_base_url(),
            pool,
            keyring,
            client,
            signer,
            pacer: Pacer::new(limiter.clone()),
            limiter,
            mailer,
            settings,
            templates: Mutex::new(HashMap::new()),
        }
    }

    /// The compiled template of a campaign, compiled once per process.
    pub(crate) fn template(&self, campaign_id: i64, source: &str) -> anyhow::Result<Arc<Template>> {
        let mut cache = self
            .templates
            .lock()
            .map_err(|_| anyhow::anyhow!("template cache poisoned"))?;
        if let Some(template) = cache.get(&campaign_id) {
            return Ok(template.clone());
        }
        let template = Arc::new(Template::compile(source)?);
        cache.insert(campaign_id, template.clone());
        Ok(template)
    }
}
