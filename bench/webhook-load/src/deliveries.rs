//! The deliveries a run sends: Meta-shaped `page` webhooks of text messages, each with its own
//! message id, from a fixed population of senders, signed as Facebook signs them
//! (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`).

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use serde_json::{Value, json};
use sha2::Sha256;

/// What to generate.
pub struct Plan<'a> {
    /// How many deliveries.
    pub count: usize,
    /// Messages in each delivery (Facebook batches several in one `messaging` array).
    pub events_per_delivery: usize,
    /// Distinct senders, cycled through.
    pub senders: usize,
    /// Facebook's id of the Page the messages are sent to.
    pub page: &'a str,
    /// The app secret the web process checks signatures with.
    pub app_secret: &'a str,
}

/// One signed delivery, ready to send many times over without copying.
pub struct Delivery {
    /// The raw JSON body.
    pub body: Bytes,
    /// The `X-Hub-Signature-256` value over exactly `body`.
    pub signature: HeaderValue,
}

/// Generates and signs `plan.count` deliveries. Message ids carry the generation time, so
/// repeated runs against one database never collide with each other's ids.
pub fn generate(plan: &Plan) -> anyhow::Result<Vec<Delivery>> {
    anyhow::ensure!(plan.senders > 0, "--senders must be at least 1");
    anyhow::ensure!(
        plan.events_per_delivery > 0,
        "--events-per-delivery must be at least 1"
    );
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let now = u64::try_from(run / 1_000_000)?;
    let mut event = 0usize;
    (0..plan.count)
        .map(|_| {
            let messaging: Vec<Value> = (0..plan.events_per_delivery)
                .map(|_| {
                    event += 1;
                    json!({
                        "sender": {"id": (7_100_000_000_000_000 + event % plan.senders).to_string()},
                        "recipient": {"id": plan.page},
                        "timestamp": now,
                        "message": {"mid": format!("m_bench_{run}_{event}"), "text": "Hi! Are you open on Sunday?"}
                    })
                })
                .collect();
            let body = serde_json::to_vec(&json!({
                "object": "page",
                "entry": [{"id": plan.page, "time": now, "messaging": messaging}]
            }))?;
            let signature = HeaderValue::from_str(&sign(plan.app_secret, &body))?;
            Ok(Delivery {
                body: Bytes::from(body),
                signature,
            })
        })
        .collect()
}

/// `sha256=<hex>` of `body` under `secret`.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
