//! The Postgres pool shared by the queue and the application, and the schema migrations.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool};

use crate::settings::DatabaseSettings;

/// Opens the pool lazily so a process starts (and reports its own errors) even while Postgres is
/// still coming up; the first query waits up to `acquire_timeout_secs`.
pub fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
        .connect_lazy(settings.url.expose_secret())
        .context("invalid database.url")
}

/// Applies apalis's migrations (tracked in `apalis._sqlx_migrations`) and ours (tracked in
/// `public._sqlx_migrations`), so the two histories never clash.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    apalis_postgres::PostgresStorage::setup(pool)
        .await
        .context("applying the queue's migrations")?;
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("applying the application's migrations")?;
    Ok(())
}

/// Creates (dropping first, if it exists) a database on the server of `url` and returns the
/// URL that points at it. The demo and the tests use it to start from a clean database; `name`
/// is limited to lowercase letters, digits and `_` because it cannot be a bind parameter.
pub async fn recreate_database(url: &str, name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "database name `{name}` must be lowercase letters, digits and _"
    );
    let (server, _) = url
        .rsplit_once('/')
        .context("database.url has no database name")?;
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .context("connecting to Postgres (is it running?)")?;
    for statement in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{name}\""),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .with_context(|| format!("re-creating database {name}"))?;
    }
    Ok(format!("{server}/{name}"))
}
