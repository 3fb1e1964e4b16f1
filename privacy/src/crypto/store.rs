//! Loading data keys from `data_keys`, following them as they change, and creating new ones.
//!
//! A data key becomes *current* (the one that seals) only once it is older than
//! [`CryptoSettings::activation_delay`]: by then every running process, re-reading `data_keys`
//! every `crypto.refresh_ms`, has loaded it and can open the values sealed under it. Until then
//! the previous key keeps sealing. The very first key is current at once (there is no other).
//! Retired keys still open values until they are removed; they never seal.

use std::time::Duration;

use age::x25519::{Identity, Recipient};
use moonengage_queue::reconnect;
use sqlx::{PgConnection, PgExecutor, PgPool};

use super::data_key::{self, DataKey};
use super::keyring::{KeySet, WeakKeyring};
use super::{CryptoError, CryptoSettings, Keyring};

/// `pg_advisory_xact_lock` key that serialises creating a data key, so processes starting at
/// once create exactly one ("MEDATKEY" in ASCII).
const CREATE_DATA_KEY_LOCK: i64 = 0x4d45_4441_544b_4559;

/// One row of `data_keys` as far as choosing keys goes; a change in any of them means reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeyState {
    id: i32,
    retired: bool,
    active: bool,
}

/// What a keyring loaded from the database needs to reload.
pub(super) struct Source {
    pool: PgPool,
    identities: Vec<Identity>,
    /// Wrap a data key created because none was usable.
    recipients: Vec<Recipient>,
    activation: Duration,
}

/// The usable data keys, in ascending id order, and which of them is current.
struct Loaded {
    keys: Vec<(i32, DataKey)>,
    /// Index into `keys` of the newest active key not retired or, when none is active yet (a
    /// first key just created), of the oldest not retired.
    current: Option<usize>,
    states: Vec<KeyState>,
}

impl Keyring {
    /// Unwraps every data key with the configured identities, creating the first data key when
    /// none is usable yet. Fails when a key not retired cannot be unwrapped (its data would be
    /// unreadable), naming the key; retired keys that cannot be unwrapped are skipped. The
    /// keyring then re-reads `data_keys` every `crypto.refresh_ms` in the background (until the
    /// last clone is dropped), so it learns of a rotation without a restart.
    pub async fn load_or_create(
        pool: &PgPool,
        settings: &CryptoSettings,
    ) -> Result<Keyring, CryptoError> {
        let parsed = settings.parse()?;
        let source = Source {
            pool: pool.clone(),
            identities: parsed.identities,
            recipients: parsed.recipients,
            activation: settings.activation_delay(),
        };
        let keys = load_current(&source, true).await?;
        tracing::info!(
            current_data_key_id = keys.current_id(),
            data_keys = keys.states.len(),
            "loaded data keys"
        );
        let keyring = Keyring::with_source(keys, parsed.blind_index, Some(source));
        spawn_refresh(keyring.downgrade(), settings.refresh_interval());
        Ok(keyring)
    }

    /// Re-reads `data_keys` and switches to the keys found there when they changed (a new key,
    /// a key becoming current, retired or removed); returns whether they did. Values sealed
    /// under a newly loaded key open at once. A keyring built from keys in memory has nothing
    /// to re-read.
    pub async fn refresh(&self) -> Result<bool, CryptoError> {
        let Some((source, reloading)) = self.source() else {
            return Ok(false);
        };
        let _one_at_a_time = reloading.lock().await;
        if states(&source.pool, source.activation).await? == self.keys().states {
            return Ok(false);
        }
        let keys = load_current(source, false).await?;
        tracing::info!(
            current_data_key_id = keys.current_id(),
            data_keys = keys.states.len(),
            "data keys changed; reloaded"
        );
        self.install(keys);
        Ok(true)
    }
}

/// Adds a data key wrapped to the configured recipients (so a recipient added to the settings
/// can unwrap it) and returns its id. It becomes current after
/// [`CryptoSettings::activation_delay`]; re-sealing older values under it is the rotate job's
/// work. Pass a transaction to queue that job with it.
pub async fn add_data_key(
    conn: &mut PgConnection,
    settings: &CryptoSettings,
) -> Result<i32, CryptoError> {
    let parsed = settings.parse()?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CREATE_DATA_KEY_LOCK)
        .execute(&mut *conn)
        .await?;
    insert_key(conn, &data_key::generate(), &parsed.recipients).await
}

/// Re-reads `data_keys` every `every` while the keyring lives. A failed read keeps the keys
/// loaded and tries again next time.
fn spawn_refresh(keyring: WeakKeyring, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(keyring) = keyring.upgrade() else {
                return;
            };
            // On failure the loaded keys stay in use.
            reconnect::report(keyring.refresh().await, "re-reading data keys");
        }
    });
}

/// Loads the keys; with `create`, creates a first one when none is usable (a refresh does not:
/// every key retired under a running process is an operator's mistake to report, not repair).
async fn load_current(source: &Source, create: bool) -> Result<KeySet, CryptoError> {
    let loaded = load(&source.pool, source).await?;
    let Loaded {
        mut keys,
        current,
        states,
    } = match loaded.current {
        Some(_) => loaded,
        None if create => create_first(source).await?,
        None => return Err(CryptoError::NoUsableDataKey),
    };
    let current = keys.remove(current.expect("a usable key was loaded or created"));
    Ok(KeySet::new(current, keys, states))
}

/// Creates a data key unless another process did so first: under a transaction-scoped advisory
/// lock, reloads, and inserts only if there is still no usable key.
async fn create_first(source: &Source) -> Result<Loaded, CryptoError> {
    let mut tx = source.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CREATE_DATA_KEY_LOCK)
        .execute(&mut *tx)
        .await?;
    let mut loaded = load(&mut *tx, source).await?;
    if loaded.current.is_none() {
        insert_key(&mut tx, &data_key::generate(), &source.recipients).await?;
        loaded = load(&mut *tx, source).await?;
    }
    tx.commit().await?;
    Ok(loaded)
}

/// Stores a data key wrapped to `recipients`.
async fn insert_key(
    conn: &mut PgConnection,
    key: &DataKey,
    recipients: &[Recipient],
) -> Result<i32, CryptoError> {
    let wrapped = data_key::wrap(key, recipients)?;
    let id: i32 = sqlx::query_scalar("INSERT INTO data_keys (wrapped) VALUES ($1) RETURNING id")
        .bind(wrapped)
        .fetch_one(&mut *conn)
        .await?;
    tracing::info!(
        data_key_id = id,
        recipients = recipients.len(),
        "created a data key"
    );
    Ok(id)
}

/// The state of every data key: cheap to read, to tell whether a reload is due.
async fn states<'e>(
    executor: impl PgExecutor<'e>,
    activation: Duration,
) -> Result<Vec<KeyState>, CryptoError> {
    let rows: Vec<(i32, bool, bool)> = sqlx::query_as(
        "SELECT id, retired_at IS NOT NULL, created_at <= now() - make_interval(secs => $1)
         FROM data_keys ORDER BY id",
    )
    .bind(activation.as_secs_f64())
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, retired, active)| KeyState {
            id,
            retired,
            active,
        })
        .collect())
}

/// Reads and unwraps every data key.
async fn load<'e>(executor: impl PgExecutor<'e>, source: &Source) -> Result<Loaded, CryptoError> {
    let rows: Vec<(i32, Vec<u8>, bool, bool)> = sqlx::query_as(
        "SELECT id, wrapped, retired_at IS NOT NULL,
                created_at <= now() - make_interval(secs => $1)
         FROM data_keys ORDER BY id",
    )
    .bind(source.activation.as_secs_f64())
    .fetch_all(executor)
    .await?;
    let mut loaded = Loaded {
        keys: Vec::with_capacity(rows.len()),
        current: None,
        states: Vec::with_capacity(rows.len()),
    };
    let mut oldest_in_use = None;
    for (id, wrapped, retired, active) in rows {
        loaded.states.push(KeyState {
            id,
            retired,
            active,
        });
        match data_key::unwrap(id, &wrapped, &source.identities) {
            Ok(key) => {
                if !retired {
                    oldest_in_use = oldest_in_use.or(Some(loaded.keys.len()));
                    if active {
                        loaded.current = Some(loaded.keys.len());
                    }
                }
                loaded.keys.push((id, key));
            }
            Err(error) if retired => {
                tracing::warn!(data_key_id = id, %error, "skipping a retired data key");
            }
            Err(error) => return Err(error),
        }
    }
    loaded.current = loaded.current.or(oldest_in_use);
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use sqlx::postgres::PgPoolOptions;
    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    use super::*;
    use crate::crypto::SealedField;

    const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

    const SCHEMA: &str = "CREATE TABLE data_keys (
        id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        wrapped bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        retired_at timestamptz
    )";

    fn settings_for(identity: &Identity, recovery: &Identity) -> CryptoSettings {
        CryptoSettings {
            age_identities: vec![identity.to_string()],
            age_recipients: vec![recovery.to_public().to_string()],
            blind_index_key: SecretString::from("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            refresh_ms: 50,
        }
    }

    async fn scenario(url: String) {
        let pool_a = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        let pool_b = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query(SCHEMA).execute(&pool_a).await.unwrap();
        let identity = Identity::generate();
        let recovery = Identity::generate();
        let settings = settings_for(&identity, &recovery);

        let (a, b) = tokio::join!(
            Keyring::load_or_create(&pool_a, &settings),
            Keyring::load_or_create(&pool_b, &settings)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM data_keys")
            .fetch_one(&pool_a)
            .await
            .unwrap();
        assert_eq!(rows, 1);
        assert_eq!(a.current_key_id(), b.current_key_id());
        let sealed = a.seal(SealedField::SubscriberPsid, b"1122334455");
        assert_eq!(
            b.open(SealedField::SubscriberPsid, &sealed).unwrap(),
            b"1122334455"
        );
        assert_eq!(a.blind_index("1", "2"), b.blind_index("1", "2"));

        let again = Keyring::load_or_create(&pool_b, &settings).await.unwrap();
        assert_eq!(again.current_key_id(), a.current_key_id());

        let first = a.current_key_id();
        let mut conn = pool_a.acquire().await.unwrap();
        let added = add_data_key(&mut conn, &settings).await.unwrap();
        drop(conn);
        // The background refresh may get there first, so the state is checked, not the flag.
        b.refresh().await.unwrap();
        assert_eq!(b.current_key_id(), a.current_key_id(), "not active yet");
        tokio::time::sleep(settings.activation_delay()).await;
        b.refresh().await.unwrap();
        assert_eq!(b.current_key_id(), added);
        assert!(!b.refresh().await.unwrap(), "nothing changed since");
        let resealed = b.seal(SealedField::SubscriberPsid, b"1122334455");
        assert_eq!(
            b.open(SealedField::SubscriberPsid, &sealed).unwrap(),
            b.open(SealedField::SubscriberPsid, &resealed).unwrap()
        );
        tokio::time::sleep(settings.refresh_interval() * 3).await;
        assert_eq!(a.current_key_id(), added, "the background refresh followed");
        sqlx::query("DELETE FROM data_keys WHERE id = $1")
            .bind(added)
            .execute(&pool_a)
            .await
            .unwrap();
        a.refresh().await.unwrap();
        assert_eq!(a.current_key_id(), first, "a removed key is dropped");

        let wrapped: Vec<u8> = sqlx::query_scalar("SELECT wrapped FROM data_keys")
            .fetch_one(&pool_a)
            .await
            .unwrap();
        assert!(data_key::unwrap(1, &wrapped, &[recovery]).is_ok());

        let stranger = Identity::generate();
        let stranger_settings = settings_for(&stranger, &stranger);
        let err = Keyring::load_or_create(&pool_a, &stranger_settings)
            .await
            .unwrap_err();
        let id = a.current_key_id();
        assert!(
            matches!(err, CryptoError::DataKeyUnavailable { id: i } if i == id),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("data key {id}")), "{err}");

        sqlx::query("UPDATE data_keys SET retired_at = now()")
            .execute(&pool_a)
            .await
            .unwrap();
        let fresh = Keyring::load_or_create(&pool_a, &stranger_settings)
            .await
            .unwrap();
        assert_ne!(fresh.current_key_id(), id);
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM data_keys")
            .fetch_one(&pool_a)
            .await
            .unwrap();
        assert_eq!(rows, 2);

        pool_a.close().await;
        pool_b.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_starting_together_create_one_data_key() {
        let name = format!("crypto_test_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(&format!("{SERVER}/postgres"))
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let outcome = tokio::spawn(scenario(format!("{SERVER}/{name}"))).await;
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await
            .unwrap();
        if let Err(failure) = outcome {
            std::panic::resume_unwind(failure.into_panic());
        }
    }
}
