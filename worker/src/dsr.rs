//! The data-subject request job: opens who the request is about, carries it out (export,
//! erasure, objection) and completes it, dropping the sealed subject. A request completed
//! already is left alone, so a job that runs again does nothing.

mod app_scoped;
mod erasure;
mod export;
mod notice;
mod objection;

use anyhow::Context as _;
use moonengage_ops::metrics;
use moonengage_privacy::dsr::DsrJob;
use moonengage_privacy::dsr::DsrType;
use moonengage_privacy::requests::{self, Claimed};
use moonengage_privacy::subject::SealedSubject;
use moonengage_queue::JobError;
use moonengage_queue::run::Run;

use crate::env::Env;

/// Outcome of a request about someone we hold nothing about.
const NOTHING_HELD: &str = "nothing held";

impl Run<Env> for DsrJob {
    /// One request at a time per process: each is a few statements, rare, and an erasure
    /// should not race another about the same person.
    const CONCURRENCY: Option<usize> = Some(1);

    async fn run(self, env: &Env) -> Result<(), JobError> {
        Ok(carry_out(env, self.request_id).await?)
    }
}

async fn carry_out(ctx: &Env, request_id: i64) -> anyhow::Result<()> {
    let Some(request) = requests::claim(&ctx.pool, request_id).await? else {
        return Ok(());
    };
    let kind = request.kind;
    let subject = request
        .subject_ref
        .as_deref()
        .map(|sealed| SealedSubject::open(&ctx.keyring, sealed))
        .transpose()?;
    match subject {
        Some(SealedSubject::Page(subject)) => match kind {
            DsrType::Export => export::run(ctx, request_id, &request, &subject).await?,
            DsrType::Erasure => erasure::run(ctx, request_id, &request, &subject).await?,
            DsrType::Objection => objection::run(ctx, request_id, &subject).await?,
        },
        Some(SealedSubject::AppScoped { app_scoped_id }) => {
            app_scoped::run(ctx, request_id, &app_scoped_id).await?;
        }
        None => complete(ctx, request_id, NOTHING_HELD).await?,
    }
    metrics::dsr_completed(kind.as_str());
    tracing::debug!(request_id, kind = kind.as_str(), "request completed");
    Ok(())
}

/// Completes a request that needed no transaction of its own.
async fn complete(ctx: &Env, request_id: i64, outcome: &str) -> anyhow::Result<()> {
    let mut conn = ctx.pool.acquire().await.context("completing a request")?;
    requests::complete(&mut conn, request_id, outcome).await?;
    Ok(())
}

/// Whether the person can be sent a message now: their 24-hour window is open.
fn reachable(request: &Claimed, in_window: bool) -> bool {
    in_window || request.opened_window
}
