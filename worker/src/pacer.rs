//! Per-batch rate limiting: the sends of one Page waiting in this process at the same moment
//! share one reservation of that many slots (one Redis call, `RateLimiter::reserve_batch`)
//! instead of one call each. Slots are reserved only for senders already waiting, so none is
//! reserved for nobody; each sender then sleeps until its own slot.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moonengage_messenger::limiter::RateLimiter;

/// Coalesces the slot requests of each Page.
pub(crate) struct Pacer {
    limiter: Arc<RateLimiter>,
    pages: Mutex<HashMap<i64, Arc<PageSlots>>>,
}

/// One Page's reserved but unused slots, and who is waiting for one.
#[derive(Default)]
struct PageSlots {
    waiting: AtomicUsize,
    slots: tokio::sync::Mutex<VecDeque<Instant>>,
}

impl Pacer {
    /// Paces through `limiter`.
    pub(crate) fn new(limiter: Arc<RateLimiter>) -> Pacer {
        Pacer {
            limiter,
            pages: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for this sender's turn to send from a Page that may send `rate` per second.
    /// Returns how long it waited, or `Err(after)` when the Page is saturated and the send
    /// should be requeued.
    pub(crate) async fn wait_turn(&self, page_id: i64, rate: u32) -> Result<Duration, Duration> {
        let started = Instant::now();
        let page = {
            let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
            pages.entry(page_id).or_default().clone()
        };
        page.waiting.fetch_add(1, Ordering::SeqCst);
        let slot = {
            let mut slots = page.slots.lock().await;
            let slot = match slots.pop_front() {
                Some(slot) => Ok(slot),
                None => {
                    // Everyone queued behind this lock gets a slot from the same call.
                    let wanted = page.waiting.load(Ordering::SeqCst).max(1);
                    let reservation = self.limiter.reserve_batch(page_id, rate, wanted).await;
                    slots.extend(reservation.slots);
                    slots
                        .pop_front()
                        .ok_or(reservation.requeue_after.unwrap_or_default())
                }
            };
            page.waiting.fetch_sub(1, Ordering::SeqCst);
            slot
        }?;
        self.limiter.wait_for_slot(page_id, rate, slot).await?;
        Ok(started.elapsed())
    }
}
