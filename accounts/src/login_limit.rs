//! The brute-force limit on logins: at most `accounts.login_attempts_per_account` attempts per
//! account (known or not: the key is the e-mail) and `accounts.login_attempts_per_origin` per
//! origin network in a window of `accounts.login_window_secs`. Each attempt is counted, in one
//! atomic Redis script shared by every web process, *before* its password is verified: fifty
//! parallel guesses cannot all be tried, only as many as the limit lets through.
//!
//! Nothing about the origin is kept here: the keys are HMACs (under a key derived from
//! `crypto.blind_index_key`) of the e-mail and of the /24 or /48 network, and they expire with
//! the window. If Redis is unreachable, each process counts in-process with the same limits,
//! warns once and tries Redis again a few seconds later: logins neither stop nor run unbounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use moonengage_messenger::settings::RedisSettings;
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::AccountsSettings;
use crate::origin::Origin;

/// How long Redis is left alone after it failed, before it is tried again.
const REDIS_RETRY: Duration = Duration::from_secs(3);

/// Counts both keys of an attempt: each starts its window at its first attempt. Returns, per
/// key, the attempts in its window and the milliseconds left of it.
const COUNT: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then redis.call('PEXPIRE', key, ARGV[1]); ttl = tonumber(ARGV[1]) end
  out[2 * i - 1] = n
  out[2 * i] = ttl
end
return out
";

/// The limiter's answer for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Within the limits: verify the password.
    Allowed,
    /// Over a limit: refuse without verifying, and say when to try again.
    Refused {
        /// Until the fuller window ends.
        retry_after: Duration,
    },
}

/// One limiter per web process, shared by its requests.
pub struct LoginLimiter {
    redis: Option<ConnectionManager>,
    script: redis::Script,
    prefix: String,
    key: [u8; 32],
    per_account: u32,
    per_origin: u32,
    window: Duration,
    local: Mutex<Local>,
}

#[derive(Default)]
struct Local {
    /// When Redis may be tried again; `None` while it works.
    redis_down_until: Option<Instant>,
    /// Per hashed key: attempts and the end of its window.
    windows: HashMap<String, (u32, Instant)>,
}

impl LoginLimiter {
    /// Connects lazily (logins are limited in-process while Redis is down). `secret` is the
    /// key the HMACs are derived from (`crypto.blind_index_key`).
    pub fn new(
        redis: &RedisSettings,
        settings: &AccountsSettings,
        secret: &SecretString,
    ) -> anyhow::Result<LoginLimiter> {
        let manager = match redis.url.as_ref().map(|url| url.expose_secret().trim()) {
            Some(url) if !url.is_empty() => {
                let client = redis::Client::open(url)
                    .map_err(|e| anyhow::anyhow!("invalid redis.url: {e}"))?;
                let timeout = Some(Duration::from_millis(redis.timeout_ms));
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout)
                    .set_number_of_retries(1);
                Some(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            _ => None,
        };
        let mut derive = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .map_err(|e| anyhow::anyhow!("deriving the login limiter's key: {e}"))?;
        derive.update(b"moonengage login limiter");
        Ok(LoginLimiter {
            redis: manager,
            script: redis::Script::new(COUNT),
            prefix: redis.key_prefix.clone(),
            key: derive.finalize().into_bytes().into(),
            per_account: settings.login_attempts_per_account,
            per_origin: settings.login_attempts_per_origin,
            window: Duration::from_secs(settings.login_window_secs.max(1)),
            local: Mutex::new(Local::default()),
        })
    }

    /// Counts a login attempt for `email` from `origin` and says whether it may be verified.
    pub async fn attempt(&self, email: &str, origin: &Origin) -> Attempt {
        let keys = [
            (
                self.hashed("account", &email.trim().to_lowercase()),
                self.per_account,
            ),
            (
                self.hashed("origin", origin.network.as_deref().unwrap_or("unknown")),
                self.per_origin,
            ),
        ];
        let counts = match self.redis_if_up() {
            Some(redis) => match self.count_shared(redis, &keys).await {
                Ok(counts) => {
                    self.redis_recovered();
                    counts
                }
                Err(error) => {
                    self.redis_failed(&error);
                    self.count_locally(&keys)
                }
            },
            None => self.count_locally(&keys),
        };
        let retry_after = keys
            .iter()
            .zip(counts)
            .filter(|((_, limit), (n, _))| *n > *limit)
            .map(|(_, (_, left))| left)
            .max();
        match retry_after {
            Some(retry_after) => Attempt::Refused { retry_after },
            None => Attempt::Allowed,
        }
    }

    /// Forgets the account's attempts after a successful login, so its owner's own typos
    /// earlier in the window do not count against their next login.
    pub async fn succeeded(&self, email: &str) {
        let key = self.hashed("account", &email.trim().to_lowercase());
        if let Some(mut redis) = self.redis_if_up() {
            let deleted: redis::RedisResult<i64> = redis::cmd("DEL")
                .arg(format!("{}:login:{key}", self.prefix))
                .query_async(&mut redis)
                .await;
            if let Err(error) = deleted {
                self.redis_failed(&error);
            }
        }
        if let Ok(mut local) = self.local.lock() {
            local.windows.remove(&key);
        }
    }

    /// `kind:` and the value, under the derived key, as hex: nothing readable is kept.
    fn hashed(&self, kind: &str, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(kind.as_bytes());
        mac.update(b":");
        mac.update(value.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    async fn count_shared(
        &self,
        mut redis: ConnectionManager,
        keys: &[(String, u32)],
    ) -> redis::RedisResult<Vec<(u32, Duration)>> {
        let mut invocation = self.script.prepare_invoke();
        for (key, _) in keys {
            invocation.key(format!("{}:login:{key}", self.prefix));
        }
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let out: Vec<i64> = invocation.arg(window_ms).invoke_async(&mut redis).await?;
        Ok(out
            .chunks(2)
            .map(|pair| {
                let n = u32::try_from(pair[0]).unwrap_or(u32::MAX);
                let left = Duration::from_millis(u64::try_from(pair[1]).unwrap_or(window_ms));
                (n, left)
            })
            .collect())
    }

    /// The fallback: the same fixed windows, in this process.
    fn count_locally(&self, keys: &[(String, u32)]) -> Vec<(u32, Duration)> {
        let now = Instant::now();
        let Ok(mut local) = self.local.lock() else {
            return keys.iter().map(|_| (u32::MAX, self.window)).collect();
        };
        local.windows.retain(|_, (_, ends)| *ends > now);
        keys.iter()
            .map(|(key, _)| {
                let (n, ends) = local
                    .windows
                    .entry(key.clone())
                    .or_insert((0, now + self.window));
                *n = n.saturating_add(1);
                (*n, ends.saturating_duration_since(now))
            })
            .collect()
    }

    fn redis_if_up(&self) -> Option<ConnectionManager> {
        let redis = self.redis.clone()?;
        let down = self
            .local
            .lock()
            .ok()
            .and_then(|local| local.redis_down_until)
            .is_some_and(|until| until > Instant::now());
        (!down).then_some(redis)
    }

    fn redis_failed(&self, error: &redis::RedisError) {
        if let Ok(mut local) = self.local.lock() {
            if local.redis_down_until.is_none() {
                tracing::warn!(%error, "Redis unreachable: login attempts are limited in-process");
            }
            local.redis_down_until = Some(Instant::now() + REDIS_RETRY);
        }
    }

    fn redis_recovered(&self) {
        if let Ok(mut local) = self.local.lock()
            && local.redis_down_until.take().is_some()
        {
            tracing::info!("Redis reachable again: login attempts are limited across processes");
        }
    }
}
