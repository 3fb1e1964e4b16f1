//! Loading data keys from `data_keys`, and creating the first one.

use age::x25519::Identity;
use sqlx::{PgExecutor, PgPool};

use super::data_key::{self, DataKey};
use super::settings::ParsedSettings;
use super::{CryptoError, CryptoSettings, Keyring};

/// `pg_advisory_xact_lock` key that serialises creating a data key, so processes starting at
/// once create exactly one ("MEDATKEY" in ASCII).
const CREATE_DATA_KEY_LOCK: i64 = 0x4d45_4441_544b_4559;

/// The usable data keys, in ascending id order, and which of them is current.
struct Loaded {
    keys: Vec<(i32, DataKey)>,
    /// Index into `keys` of the newest key not retired.
    current: Option<usize>,
}

impl Keyring {
    /// Unwraps every data key with the configured identities, creating the first data key when
    /// none is usable yet. Fails when a key not retired cannot be unwrapped (its data would be
    /// unreadable), naming the key; retired keys that cannot be unwrapped are skipped.
    pub async fn load_or_create(
        pool: &PgPool,
        settings: &CryptoSettings,
    ) -> Result<Keyring, CryptoError> {
        let parsed = settings.parse()?;
        let loaded = load(pool, &parsed.identities).await?;
        let (mut keys, current) = match loaded.current {
            Some(current) => (loaded.keys, current),
            None => create_first(pool, &parsed).await?,
        };
        let current = keys.remove(current);
        tracing::info!(
            current_data_key_id = current.0,
            data_keys = keys.len() + 1,
            "loaded data keys"
        );
        Ok(Keyring::new(current, keys, parsed.blind_index))
    }
}

/// Creates a data key unless another process did so first: under a transaction-scoped advisory
/// lock, reloads, and inserts only if there is still no usable key. Returns the keys and the
/// index of the current one.
async fn create_first(
    pool: &PgPool,
    parsed: &ParsedSettings,
) -> Result<(Vec<(i32, DataKey)>, usize), CryptoError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CREATE_DATA_KEY_LOCK)
        .execute(&mut *tx)
        .await?;
    let Loaded { mut keys, current } = load(&mut *tx, &parsed.identities).await?;
    let current = match current {
        Some(current) => current,
        None => {
            let key = data_key::generate();
            let wrapped = data_key::wrap(&key, &parsed.recipients)?;
            let id: i32 =
                sqlx::query_scalar("INSERT INTO data_keys (wrapped) VALUES ($1) RETURNING id")
                    .bind(wrapped)
                    .fetch_one(&mut *tx)
                    .await?;
            tracing::info!(
                data_key_id = id,
                recipients = parsed.recipients.len(),
                "created a data key"
            );
            keys.push((id, key));
            keys.len() - 1
        }
    };
    tx.commit().await?;
    Ok((keys, current))
}

/// Reads and unwraps every data key.
async fn load<'e>(
    executor: impl PgExecutor<'e>,
    identities: &[Identity],
) -> Result<Loaded, CryptoError> {
    let rows: Vec<(i32, Vec<u8>, bool)> =
        sqlx::query_as("SELECT id, wrapped, retired_at IS NOT NULL FROM data_keys ORDER BY id")
            .fetch_all(executor)
            .await?;
    let mut loaded = Loaded {
        keys: Vec::with_capacity(rows.len()),
        current: None,
    };
    for (id, wrapped, retired) in rows {
        match data_key::unwrap(id, &wrapped, identities) {
            Ok(key) => {
                if !retired {
                    loaded.current = Some(loaded.keys.len());
                }
                loaded.keys.push((id, key));
            }
            Err(error) if retired => {
                tracing::warn!(data_key_id = id, %error, "skipping a retired data key");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use sqlx::postgres::PgPoolOptions;
    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    use super::*;
    use crate::crypto::Context;

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
        let sealed = a.seal(Context::SubscriberPsid, b"1122334455");
        assert_eq!(
            b.open(Context::SubscriberPsid, &sealed).unwrap(),
            b"1122334455"
        );
        assert_eq!(a.blind_index("1", "2"), b.blind_index("1", "2"));

        let again = Keyring::load_or_create(&pool_b, &settings).await.unwrap();
        assert_eq!(again.current_key_id(), a.current_key_id());

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
