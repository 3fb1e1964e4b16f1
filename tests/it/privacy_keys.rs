//! Privacy over time: key rotation re-seals every personal field online, under a running
//! campaign, until the old data key can be removed; retention deletes what is kept no longer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use moonengage_core::campaigns;
use moonengage_core::subscribers::{self, NewSubscriber};
use moonengage_privacy::catalog::{self, Holds, SealedColumn};
use moonengage_privacy::crypto::{CryptoError, Keyring, SealedField, key_id_of};
use moonengage_privacy::rotation;
use moonengage_queue::{Job, jobs};
use moonengage_sandbox::MessageFilter;
use sqlx::{AssertSqlSafe, PgPool};

use crate::helpers::{Harness, Person, TestDb, random_psid};

const RECIPIENTS: usize = 2_500;

/// Every sealed value in the database, with the column it is in.
async fn sealed_values(pool: &PgPool) -> Vec<(SealedColumn, Vec<u8>)> {
    let mut values = Vec::new();
    for sealed in catalog::sealed_columns() {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {column} FROM {table} WHERE {column} IS NOT NULL",
            table = sealed.table,
            column = sealed.column
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        values.extend(rows.into_iter().map(|value| (sealed, value)));
    }
    values
}

/// A value in each sealed column the campaign does not fill: a received event (due in an hour,
/// so no worker processes it and opts its sender in to the campaign), a data-subject request and
/// its export.
async fn seal_other_columns(pool: &PgPool, keyring: &Keyring) {
    sqlx::query(
        "INSERT INTO webhook_events (mid_hash, page_fb_id, psid, kind, intent, event_at, run_at)
         VALUES ($1, '1001', $2, 'message', 'none', now(), now() + interval '1 hour')",
    )
    .bind(rand::random::<[u8; 32]>().to_vec())
    .bind(keyring.seal_str(SealedField::WebhookEventPsid, &random_psid()))
    .execute(pool)
    .await
    .unwrap();
    let request: i64 = sqlx::query_scalar(
        "INSERT INTO dsr_requests (type, channel, due_at, confirmation_code, subject_ref)
         VALUES ('export', 'admin', now() + interval '30 days', 'ROTATE1', $1) RETURNING id",
    )
    .bind(keyring.seal(SealedField::DsrSubject, b"{\"page\":\"1001\"}"))
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO exports (dsr_request_id, token_hash, payload, expires_at)
         VALUES ($1, $2, $3, now() + interval '7 days')",
    )
    .bind(request)
    .bind(rand::random::<[u8; 32]>().to_vec())
    .bind(keyring.seal(SealedField::ExportPayload, b"{\"subscriber\":{}}"))
    .execute(pool)
    .await
    .unwrap();
}

/// Opts people in, one every few milliseconds, with `keyring` (a process that may still seal
/// under the old key while the rotation runs), until `stop`.
fn keep_opting_in(pool: PgPool, keyring: Keyring, page: i64, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let person = NewSubscriber {
                psid: random_psid(),
                first_name: Some("Late".into()),
                opted_in_at: Utc::now(),
                consent_source: "messenger".into(),
                last_interaction_at: Utc::now(),
            };
            subscribers::insert_batch(&pool, &keyring, page, "1001", &[person])
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

async fn data_key_ids(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar("SELECT id FROM data_keys ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotation_during_a_running_campaign_sends_once_and_leaves_nothing_under_the_old_key() {
    let mut h = Harness::new().await;
    h.settings.crypto.refresh_ms = 200;
    h.sandbox.set_latency(Duration::from_millis(30));
    let page = h.add_page("1001").await;
    let people: Vec<Person> = (0..RECIPIENTS)
        .map(|i| Person::in_window(&format!("R{i}")))
        .collect();
    h.seed(page, "1001", &people).await;
    seal_other_columns(h.pool(), &h.keyring).await;
    let [old_key] = data_key_ids(h.pool()).await[..] else {
        panic!("one data key before the rotation");
    };
    let old_wrapped: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM data_keys")
        .fetch_one(h.pool())
        .await
        .unwrap();

    let campaign = h
        .campaign(page, "Hello {{first_name default=\"there\"}}")
        .await;
    h.start_scheduler().await;
    h.start_worker("it-rotate-worker").await;
    let started = Instant::now();
    while (h.sandbox.stats().received_total as usize) < RECIPIENTS / 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "campaign did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let progress = campaigns::progress(h.pool(), h.workspace_id, campaign)
        .await
        .unwrap()
        .unwrap();
    assert!(progress.fanout_done, "{progress:?}");

    // Another process opting people in, with a keyring loaded before the rotation.
    let writer = Keyring::load_or_create(h.pool(), &h.settings.crypto)
        .await
        .unwrap();
    let stop_writer = Arc::new(AtomicBool::new(false));
    keep_opting_in(h.pool().clone(), writer, page, stop_writer.clone());

    let received_at_rotation = h.sandbox.stats().received_total as usize;
    let new_key = rotation::begin(h.pool(), &h.settings.crypto, h.settings.queue.max_attempts)
        .await
        .unwrap();
    assert!(new_key > old_key);
    assert!(
        received_at_rotation < RECIPIENTS / 2,
        "the rotation must start mid-campaign ({received_at_rotation} sent)"
    );

    let rotating = Instant::now();
    while data_key_ids(h.pool()).await != [new_key] {
        assert!(
            rotating.elapsed() < Duration::from_secs(60),
            "the old data key was not removed: {:?}",
            data_key_ids(h.pool()).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_writer.store(true, Ordering::Relaxed);
    println!(
        "rotation finished after {:?}, with {} of {RECIPIENTS} messages sent",
        rotating.elapsed(),
        h.sandbox.stats().received_total
    );

    let done = h.wait_completed(campaign, Duration::from_secs(120)).await;
    assert_eq!(
        (done.sent, done.failed, done.unknown),
        (RECIPIENTS as i64, 0, 0)
    );
    let stats = h.sandbox.stats();
    assert_eq!(
        (stats.received_total, stats.duplicates),
        (RECIPIENTS as u64, 0)
    );
    let reached: BTreeSet<String> = h
        .sandbox
        .messages(&MessageFilter::default())
        .into_iter()
        .map(|m| m.psid)
        .collect();
    let seeded: BTreeSet<String> = people.iter().map(|p| p.psid.clone()).collect();
    assert_eq!(reached, seeded, "everyone, once");

    // Every sealed column is listed for rotation, and every one of them holds values here.
    let bytea: BTreeSet<String> = sqlx::query_scalar(
        "SELECT table_name || '.' || column_name FROM information_schema.columns
         WHERE table_schema = 'public' AND data_type = 'bytea'",
    )
    .fetch_all(h.pool())
    .await
    .unwrap()
    .into_iter()
    .collect();
    let listed: BTreeSet<String> = catalog::COLUMNS
        .iter()
        .filter(|c| matches!(c.holds, Holds::Sealed(_) | Holds::BlindIndex | Holds::Hash))
        .map(|c| (c.table, c.column))
        .chain(catalog::NOT_PERSONAL.iter().map(|(t, c, _)| (*t, *c)))
        .map(|(table, column)| format!("{table}.{column}"))
        .collect();
    let unknown: Vec<_> = bytea.difference(&listed).collect();
    assert!(
        unknown.is_empty(),
        "bytea columns not in the catalog: {unknown:?}"
    );
    for sealed in catalog::sealed_columns() {
        let name = format!("{}.{}", sealed.table, sealed.column);
        assert!(
            bytea.contains(&name),
            "{name} is catalogued as sealed but is not bytea"
        );
    }
    let values = sealed_values(h.pool()).await;
    for sealed in catalog::sealed_columns() {
        assert!(
            values
                .iter()
                .any(|(c, _)| c.table == sealed.table && c.column == sealed.column),
            "no value in {}.{}",
            sealed.table,
            sealed.column
        );
    }

    // Only the new key is left, and it alone opens everything, content intact.
    let new_only = Keyring::load_or_create(h.pool(), &h.settings.crypto)
        .await
        .unwrap();
    assert_eq!(new_only.current_key_id(), new_key);
    let mut psids = BTreeSet::new();
    for (sealed, value) in &values {
        assert_eq!(
            key_id_of(value),
            Some(new_key),
            "{}.{}",
            sealed.table,
            sealed.column
        );
        let plain = new_only.open(sealed.field, value).unwrap();
        if sealed.field == SealedField::SubscriberPsid {
            psids.insert(String::from_utf8(plain).unwrap());
        }
    }
    assert!(psids.is_superset(&seeded));

    // The old key, restored on its own, opens none of it.
    let scratch = TestDb::new().await;
    sqlx::query("INSERT INTO data_keys (id, wrapped) OVERRIDING SYSTEM VALUE VALUES ($1, $2)")
        .bind(old_key)
        .bind(&old_wrapped)
        .execute(&scratch.pool)
        .await
        .unwrap();
    let old_only = Keyring::load_or_create(&scratch.pool, &h.settings.crypto)
        .await
        .unwrap();
    assert_eq!(old_only.current_key_id(), old_key);
    for (sealed, value) in &values {
        let opened = old_only.open(sealed.field, value);
        assert!(
            matches!(opened, Err(CryptoError::UnknownKey(id)) if id == new_key),
            "{}.{} opened with the old key",
            sealed.table,
            sealed.column
        );
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// A campaign row in a given state (counters frozen when it has completed) with delivery rows
/// written 100 days ago.
async fn campaign_with_deliveries(
    pool: &PgPool,
    page: i64,
    state: &str,
    completed_days_ago: Option<i32>,
    recipients: i32,
    deliveries: &[(i64, &str)],
) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO campaigns (page_id, name, template, state, fanout_done, recipients, sent,
                                skipped, completed_at, created_at)
         VALUES ($1, 'retention', 'Hi', $2, true, $3,
                 $5, $6,
                 now() - make_interval(days => $4), now() - interval '100 days')
         RETURNING id",
    )
    .bind(page)
    .bind(state)
    .bind(recipients)
    .bind(completed_days_ago)
    .bind(deliveries.iter().filter(|(_, s)| *s == "sent").count() as i32)
    .bind(deliveries.iter().filter(|(_, s)| *s == "skipped").count() as i32)
    .fetch_one(pool)
    .await
    .unwrap();
    for (subscriber, status) in deliveries {
        sqlx::query(
            "INSERT INTO deliveries (campaign_id, subscriber_id, status, created_at, updated_at)
             VALUES ($1, $2, $3, now() - interval '100 days', now() - interval '100 days')",
        )
        .bind(id)
        .bind(subscriber)
        .bind(status)
        .execute(pool)
        .await
        .unwrap();
    }
    id
}

async fn deliveries_of(pool: &PgPool, campaign: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE campaign_id = $1")
        .bind(campaign)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A job of a test-only kind.
#[derive(serde::Serialize, serde::Deserialize)]
struct RetentionTest {
    key: String,
}

impl Job for RetentionTest {
    const KIND: &'static str = "retention-test";

    fn key(&self) -> String {
        self.key.clone()
    }
}

/// Queues a job of the test-only kind and sets its state.
async fn job(pool: &PgPool, key: &str, status: &str, finished_ago: &str) {
    jobs::enqueue(pool, &RetentionTest { key: key.into() }, 1)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE jobs SET status = $2, attempts = 1,
             finished_at = CASE WHEN $2 = 'queued' THEN NULL ELSE now() - $3::interval END
         WHERE kind = 'retention-test' AND key = $1",
    )
    .bind(key)
    .bind(status)
    .bind(finished_ago)
    .execute(pool)
    .await
    .unwrap();
}

/// A webhook event received `age` ago; processed (sender erased) or still holding its sender.
async fn event(pool: &PgPool, keyring: &Keyring, processed: bool, age: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO webhook_events
           (mid_hash, page_fb_id, psid, kind, intent, event_at, received_at, processed_at)
         VALUES ($1, '2002', $2, 'message', 'none', now() - $3::interval, now() - $3::interval,
                 CASE WHEN $4 THEN now() - $3::interval END)
         RETURNING id",
    )
    .bind(rand::random::<[u8; 32]>().to_vec())
    .bind((!processed).then(|| keyring.seal_str(SealedField::WebhookEventPsid, &random_psid())))
    .bind(age)
    .bind(processed)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_what_expired_and_keeps_the_rest() {
    let mut h = Harness::new().await;
    h.settings.retention.interval_ms = 200;
    let pool = h.pool().clone();
    let page = h.add_page("2002").await;
    let people: Vec<Person> = (0..4)
        .map(|i| Person::in_window(&format!("K{i}")))
        .collect();
    h.seed(page, "2002", &people).await;
    let s: Vec<i64> = sqlx::query_scalar("SELECT id FROM subscribers ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let three_sent = [(s[0], "sent"), (s[1], "sent"), (s[2], "sent")];

    let old = campaign_with_deliveries(&pool, page, "completed", Some(91), 3, &three_sent).await;
    let recent = campaign_with_deliveries(&pool, page, "completed", Some(10), 3, &three_sent).await;
    let cancelled = campaign_with_deliveries(
        &pool,
        page,
        "cancelled",
        None,
        3,
        &[(s[0], "sent"), (s[1], "skipped"), (s[2], "skipped")],
    )
    .await;
    // Running with a send still to come: its delivery rows are send-once claims.
    let running = campaign_with_deliveries(&pool, page, "running", None, 4, &three_sent).await;

    job(&pool, "failed-old", "failed", "2 days").await;
    job(&pool, "failed-recent", "failed", "1 hour").await;
    job(&pool, "pending", "queued", "0").await;

    let processed_old = event(&pool, &h.keyring, true, "2 days").await;
    let processed_recent = event(&pool, &h.keyring, true, "1 hour").await;
    // Parked as failed two days ago: nobody will process it.
    let failed_old = event(&pool, &h.keyring, false, "2 days").await;
    sqlx::query("UPDATE webhook_events SET failed_at = now() - interval '2 days' WHERE id = $1")
        .bind(failed_old)
        .execute(&pool)
        .await
        .unwrap();
    // Received two days ago and still queued (its retries are due later): kept.
    let queued_old = event(&pool, &h.keyring, false, "2 days").await;
    sqlx::query("UPDATE webhook_events SET run_at = now() + interval '1 hour' WHERE id = $1")
        .bind(queued_old)
        .execute(&pool)
        .await
        .unwrap();
    let fresh = event(&pool, &h.keyring, false, "1 minute").await;

    let subject = h.keyring.seal(SealedField::DsrSubject, b"{}");
    for (code, status) in [
        ("DONE1", "completed"),
        ("OPEN1", "received"),
        ("DONE2", "completed"),
    ] {
        sqlx::query(
            "INSERT INTO dsr_requests (type, channel, status, due_at, confirmation_code,
                                       subject_ref, completed_at)
             VALUES ('export', 'admin', $2, now() + interval '30 days', $1, $3,
                     CASE WHEN $2 = 'completed' THEN now() END)",
        )
        .bind(code)
        .bind(status)
        .bind(&subject)
        .execute(&pool)
        .await
        .unwrap();
    }
    for (code, expires) in [("DONE1", "-1 minute"), ("DONE2", "7 days")] {
        sqlx::query(
            "INSERT INTO exports (dsr_request_id, token_hash, payload, expires_at)
             SELECT id, $2, $3, now() + $4::interval FROM dsr_requests
             WHERE confirmation_code = $1",
        )
        .bind(code)
        .bind(rand::random::<[u8; 32]>().to_vec())
        .bind(h.keyring.seal(SealedField::ExportPayload, b"{}"))
        .bind(expires)
        .execute(&pool)
        .await
        .unwrap();
    }
    let totals_before = campaigns::progress(&pool, h.workspace_id, old)
        .await
        .unwrap()
        .unwrap();

    h.start_scheduler().await;
    let started = Instant::now();
    while deliveries_of(&pool, old).await > 0
        || count(
            &pool,
            "SELECT count(*) FROM dsr_requests WHERE subject_ref IS NOT NULL",
        )
        .await
            > 1
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no retention pass"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Deliveries: only those of a campaign that ended 90 days ago went; its totals stay.
    let totals_after = campaigns::progress(&pool, h.workspace_id, old)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            totals_after.state.as_str(),
            totals_after.sent,
            totals_after.recipients
        ),
        ("completed", totals_before.sent, totals_before.recipients)
    );
    assert_eq!(totals_after.sent, 3);
    assert_eq!(deliveries_of(&pool, recent).await, 3);
    assert_eq!(deliveries_of(&pool, running).await, 3);
    assert_eq!(deliveries_of(&pool, cancelled).await, 3);
    let frozen: (bool, i32, i32) = sqlx::query_as(
        "SELECT completed_at IS NOT NULL, sent, skipped FROM campaigns WHERE id = $1",
    )
    .bind(cancelled)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        frozen,
        (true, 1, 2),
        "a settled cancelled campaign's totals are frozen"
    );

    // Jobs: those failed for good more than a day ago went.
    let jobs: BTreeSet<String> =
        sqlx::query_scalar("SELECT key FROM jobs WHERE kind = 'retention-test'")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(
        jobs,
        BTreeSet::from(["failed-recent".to_owned(), "pending".to_owned()])
    );

    // Webhook events: old processed ones and old ones nobody will process went.
    let events: BTreeSet<i64> = sqlx::query_scalar("SELECT id FROM webhook_events")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        events,
        BTreeSet::from([processed_recent, queued_old, fresh])
    );
    assert!(!events.contains(&processed_old) && !events.contains(&failed_old));

    // Exports: the expired one went; requests: completed ones no longer say who.
    let exports: Vec<String> = sqlx::query_scalar(
        "SELECT r.confirmation_code FROM exports e JOIN dsr_requests r ON r.id = e.dsr_request_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(exports, ["DONE2"]);
    let with_subject: Vec<String> = sqlx::query_scalar(
        "SELECT confirmation_code FROM dsr_requests WHERE subject_ref IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(with_subject, ["OPEN1"]);

    // Once the cancelled campaign ended 90 days ago too, its deliveries go and totals stay.
    sqlx::query("UPDATE campaigns SET completed_at = now() - interval '91 days' WHERE id = $1")
        .bind(cancelled)
        .execute(&pool)
        .await
        .unwrap();
    let started = Instant::now();
    while deliveries_of(&pool, cancelled).await > 0 {
        assert!(started.elapsed() < Duration::from_secs(15), "no later pass");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancelled_totals = campaigns::progress(&pool, h.workspace_id, cancelled)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            cancelled_totals.state.as_str(),
            cancelled_totals.sent,
            cancelled_totals.skipped
        ),
        ("cancelled", 1, 2)
    );
}

/// Every column of the schema that looks like personal data — `bytea`, named like a PSID, a
/// name, an index, a hash, an IP, an e-mail or a phone number, or referencing `subscribers` —
/// is in the catalog (or in its list of look-alikes), so a new one cannot be forgotten by
/// rotation, erasure, export or retention; and every catalogued column exists.
#[tokio::test]
async fn every_column_that_looks_like_personal_data_is_in_the_catalog() {
    let db = TestDb::new().await;
    let columns: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text,
                c.data_type = 'bytea'
                OR c.column_name ~ '(psid|name|subscriber|_index|hash|email|phone|address|^ip$|_ip$|^ip_)'
                OR EXISTS (
                    SELECT 1 FROM information_schema.key_column_usage k
                    JOIN information_schema.referential_constraints r
                      ON r.constraint_name = k.constraint_name
                    JOIN information_schema.constraint_column_usage u
                      ON u.constraint_name = r.unique_constraint_name
                    WHERE k.table_name = c.table_name AND k.column_name = c.column_name
                      AND u.table_name = 'subscribers')
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let known: BTreeSet<(&str, &str)> = catalog::COLUMNS
        .iter()
        .map(|c| (c.table, c.column))
        .chain(catalog::NOT_PERSONAL.iter().map(|(t, c, _)| (*t, *c)))
        .collect();
    let looks_personal: Vec<String> = columns
        .iter()
        .filter(|(table, column, looks)| {
            *looks && !known.contains(&(table.as_str(), column.as_str()))
        })
        .map(|(table, column, _)| format!("{table}.{column}"))
        .collect();
    assert!(
        looks_personal.is_empty(),
        "columns that look like personal data are not in privacy::catalog: {looks_personal:?}"
    );
    let in_schema: BTreeSet<(&str, &str)> = columns
        .iter()
        .map(|(table, column, _)| (table.as_str(), column.as_str()))
        .collect();
    let missing: Vec<_> = known.difference(&in_schema).collect();
    assert!(
        missing.is_empty(),
        "catalogued but not in the schema: {missing:?}"
    );
}
