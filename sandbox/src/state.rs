//! The sandbox's in-memory world: registered Pages and profiles, closed windows, injected faults,
//! and the traffic received. Shared by the HTTP handlers, the control API and in-process tests.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::faults::Faults;
use crate::rate_limit::{Admission, SlidingWindow};
use crate::records::{MessageFilter, PageStats, ReceivedMessage, Stats};
use crate::registration::{
    IdMappingRegistration, PageRegistration, PageScopedId, ProfileRegistration,
};

/// Tokens of this form are accepted for the Page they name without registration, for demos.
const DEMO_TOKEN_PREFIX: &str = "sandbox-token-";

/// A cheap, cloneable handle to one sandbox's state; every clone sees the same world.
#[derive(Clone)]
pub struct SandboxState {
    inner: Arc<Inner>,
}

struct Inner {
    initial_latency: Duration,
    initial_rate_limit: u32,
    latency_micros: AtomicU64,
    rate_limit: AtomicU32,
    requests_total: AtomicU64,
    /// Random per-process prefix of message ids, so ids stay unique across restarts.
    instance: u32,
    next_message: AtomicU64,
    config: RwLock<Config>,
    traffic: Mutex<Traffic>,
}

/// What tests configure; read on every call, written rarely.
#[derive(Default)]
struct Config {
    tokens: HashMap<String, Arc<str>>,
    page_names: HashMap<String, String>,
    profiles: HashMap<String, String>,
    ids_for_pages: HashMap<String, Vec<PageScopedId>>,
    closed_windows: HashSet<String>,
    faults: Arc<Faults>,
}

/// What the calls did; written on every call under one short lock.
#[derive(Default)]
struct Traffic {
    pages: HashMap<Arc<str>, PageTraffic>,
    messages: Vec<ReceivedMessage>,
    /// How often each (Page, PSID, text) was accepted, by hash.
    accepted_keys: HashMap<u64, u32>,
    duplicates: u64,
    /// (Page, PSID, text) hashes already seen by the random faults, for `first_attempt_only`.
    attempted_keys: HashSet<u64>,
}

#[derive(Default)]
struct PageTraffic {
    calls: SlidingWindow,
    accepted: SlidingWindow,
    received: u64,
    rejected: HashMap<Rejection, u64>,
    max_per_second: u64,
}

/// Why a Send call was refused, as counted in [`PageStats::rejected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Rejection {
    /// A Graph API error with this code.
    Code(u32),
    /// An injected plain HTTP 503.
    Http503,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Code(code) => write!(f, "{code}"),
            Rejection::Http503 => f.write_str("http_503"),
        }
    }
}

/// Identifies "the same message" for duplicate counting and `first_attempt_only`.
pub(crate) fn message_key(page_id: &str, psid: &str, text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    (page_id, psid, text).hash(&mut hasher);
    hasher.finish()
}

impl SandboxState {
    /// A fresh world with the given starting latency and per-Page rate limit (restored by reset).
    pub(crate) fn new(latency: Duration, rate_limit_per_page: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                initial_latency: latency,
                initial_rate_limit: rate_limit_per_page,
                latency_micros: AtomicU64::new(duration_micros(latency)),
                rate_limit: AtomicU32::new(rate_limit_per_page),
                requests_total: AtomicU64::new(0),
                instance: rand::random(),
                next_message: AtomicU64::new(1),
                config: RwLock::default(),
                traffic: Mutex::default(),
            }),
        }
    }

    /// Registers a Page so its token is accepted (replacing an earlier registration of the token).
    pub fn register_page(&self, page: PageRegistration) {
        let mut config = self.config_mut();
        if let Some(name) = page.name {
            config.page_names.insert(page.page_id.clone(), name);
        }
        config
            .tokens
            .insert(page.access_token, Arc::from(page.page_id));
    }

    /// Sets the first name the User Profile API answers for a PSID.
    pub fn register_profile(&self, profile: ProfileRegistration) {
        self.config_mut()
            .profiles
            .insert(profile.psid, profile.first_name);
    }

    /// Sets the Page-scoped ids the ID Matching API answers for an app-scoped id.
    pub fn register_ids_for_pages(&self, mapping: IdMappingRegistration) {
        self.config_mut()
            .ids_for_pages
            .insert(mapping.app_scoped_id, mapping.pages);
    }

    /// Marks PSIDs as outside their 24-hour window: Send calls to them get code 10 / 2018278.
    pub fn close_window<I, S>(&self, psids: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config_mut()
            .closed_windows
            .extend(psids.into_iter().map(Into::into));
    }

    /// Replaces the injected faults; `first_attempt_only` starts counting afresh.
    pub fn set_faults(&self, faults: Faults) {
        self.config_mut().faults = Arc::new(faults);
        self.traffic().attempted_keys.clear();
    }

    /// Changes how long every Send/Profile answer is delayed.
    pub fn set_latency(&self, latency: Duration) {
        self.inner
            .latency_micros
            .store(duration_micros(latency), Ordering::Relaxed);
    }

    /// Changes the Send API calls allowed per second per Page (0 = unlimited).
    pub fn set_rate_limit(&self, per_second: u32) {
        self.inner.rate_limit.store(per_second, Ordering::Relaxed);
    }

    /// The accepted messages matching `filter`, in arrival order.
    pub fn messages(&self, filter: &MessageFilter) -> Vec<ReceivedMessage> {
        self.traffic()
            .messages
            .iter()
            .filter(|m| filter.matches(m))
            .cloned()
            .collect()
    }

    /// The traffic counters.
    pub fn stats(&self) -> Stats {
        let traffic = self.traffic();
        let by_page = traffic
            .pages
            .iter()
            .map(|(page, t)| {
                let rejected = t
                    .rejected
                    .iter()
                    .map(|(why, n)| (why.to_string(), *n))
                    .collect::<BTreeMap<_, _>>();
                let stats = PageStats {
                    received: t.received,
                    rejected,
                    max_per_second: t.max_per_second,
                };
                (page.to_string(), stats)
            })
            .collect();
        Stats {
            received_total: traffic.messages.len() as u64,
            by_page,
            duplicates: traffic.duplicates,
            requests_total: self.inner.requests_total.load(Ordering::Relaxed),
        }
    }

    /// Forgets all traffic, faults and closed windows, and restores the starting latency and
    /// rate limit; registered Pages and profiles stay.
    pub fn reset(&self) {
        {
            let mut config = self.config_mut();
            config.faults = Arc::default();
            config.closed_windows.clear();
        }
        *self.traffic() = Traffic::default();
        self.inner.requests_total.store(0, Ordering::Relaxed);
        self.set_latency(self.inner.initial_latency);
        self.set_rate_limit(self.inner.initial_rate_limit);
    }

    /// How long answers are currently delayed.
    pub(crate) fn latency(&self) -> Duration {
        Duration::from_micros(self.inner.latency_micros.load(Ordering::Relaxed))
    }

    /// Counts one Send API request, whatever its outcome.
    pub(crate) fn count_request(&self) {
        self.inner.requests_total.fetch_add(1, Ordering::Relaxed);
    }

    /// The Page an access token sends as, if any.
    pub(crate) fn resolve_token(&self, token: &str) -> Option<Arc<str>> {
        if let Some(page) = self.config().tokens.get(token) {
            return Some(page.clone());
        }
        token
            .strip_prefix(DEMO_TOKEN_PREFIX)
            .filter(|page| !page.is_empty())
            .map(Arc::from)
    }

    /// The Page's registered name.
    pub(crate) fn page_name(&self, page_id: &str) -> Option<String> {
        self.config().page_names.get(page_id).cloned()
    }

    /// The registered first name of a PSID.
    pub(crate) fn profile_name(&self, psid: &str) -> Option<String> {
        self.config().profiles.get(psid).cloned()
    }

    /// The registered Page-scoped ids of an app-scoped id (none when unknown).
    pub(crate) fn ids_for_pages(&self, app_scoped_id: &str) -> Vec<PageScopedId> {
        self.config()
            .ids_for_pages
            .get(app_scoped_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the PSID was marked as outside its window.
    pub(crate) fn is_window_closed(&self, psid: &str) -> bool {
        self.config().closed_windows.contains(psid)
    }

    /// The faults in force (a snapshot; later changes do not affect it).
    pub(crate) fn faults(&self) -> Arc<Faults> {
        self.config().faults.clone()
    }

    /// Uses one call of the Page's budget for this second if there is one; a refusal is
    /// counted as a 613 rejection.
    pub(crate) fn admit(&self, page: &Arc<str>) -> Admission {
        let limit = self.inner.rate_limit.load(Ordering::Relaxed);
        let mut traffic = self.traffic();
        let page_traffic = traffic.page(page);
        let admission = page_traffic.calls.admit(Instant::now(), limit);
        if !admission.allowed {
            *page_traffic
                .rejected
                .entry(Rejection::Code(613))
                .or_default() += 1;
        }
        admission
    }

    /// The share of the Page's budget used this second, without using any.
    pub(crate) fn usage_percent(&self, page: &Arc<str>) -> u32 {
        let limit = self.inner.rate_limit.load(Ordering::Relaxed);
        self.traffic().page(page).calls.usage(Instant::now(), limit)
    }

    /// Counts a refused Send call.
    pub(crate) fn reject(&self, page: &Arc<str>, why: Rejection) {
        *self.traffic().page(page).rejected.entry(why).or_default() += 1;
    }

    /// Whether this is the first call the random faults see for `key` (and remembers it).
    pub(crate) fn first_attempt(&self, key: u64) -> bool {
        self.traffic().attempted_keys.insert(key)
    }

    /// A fresh, unique `message_id`.
    pub(crate) fn next_message_id(&self) -> String {
        let n = self.inner.next_message.fetch_add(1, Ordering::Relaxed);
        format!("m_{:08x}{n:012x}", self.inner.instance)
    }

    /// Records an accepted message; `key` is its [`message_key`], `admitted_at` the instant its
    /// call was admitted by [`admit`](Self::admit). Counting acceptances at their admission
    /// instants keeps `max_per_second` within the rate limit however threads interleave.
    pub(crate) fn record(
        &self,
        page: &Arc<str>,
        mut message: ReceivedMessage,
        key: u64,
        admitted_at: Instant,
    ) {
        message.received_at_ms = unix_millis();
        let mut traffic = self.traffic();
        let page_traffic = traffic.page(page);
        page_traffic.received += 1;
        let busiest = page_traffic.accepted.insert(admitted_at) as u64;
        page_traffic.max_per_second = page_traffic.max_per_second.max(busiest);
        let seen = traffic.accepted_keys.entry(key).or_default();
        *seen += 1;
        if *seen == 2 {
            traffic.duplicates += 1;
        }
        traffic.messages.push(message);
    }

    fn config(&self) -> RwLockReadGuard<'_, Config> {
        self.inner
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn config_mut(&self) -> RwLockWriteGuard<'_, Config> {
        self.inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn traffic(&self) -> MutexGuard<'_, Traffic> {
        self.inner
            .traffic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Traffic {
    fn page(&mut self, page: &Arc<str>) -> &mut PageTraffic {
        self.pages.entry(page.clone()).or_default()
    }
}

fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
