//! `/privacy`: the public privacy policy, server-rendered (handlebars) from what the system
//! really does — the retention periods are read from the settings, the version from
//! `policy_versions` — so the page cannot drift from the code. `/privacy/versions/{id}` shows an
//! earlier version's date and what changed. Plain HTML: no script, no cookie, nothing loaded
//! from elsewhere.

use std::sync::LazyLock;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use handlebars::Handlebars;
use moonengage_core::settings::Settings;
use moonengage_privacy::incidents::REPORT_DEADLINE_HOURS;
use serde::Serialize;
use serde_json::json;

use crate::error::{ApiError, ApiPath};
use crate::state::AppState;
use crate::unsubscribe::page;

const TEMPLATE: &str = "privacy";

static TEMPLATES: LazyLock<Handlebars<'static>> = LazyLock::new(|| {
    let mut templates = Handlebars::new();
    templates.set_strict_mode(true);
    templates
        .register_template_string(TEMPLATE, include_str!("../templates/privacy.hbs"))
        .expect("the privacy template parses");
    templates
});

/// A published version, as the page lists it.
#[derive(Serialize, sqlx::FromRow)]
struct Version {
    id: i64,
    version: String,
    summary: String,
    #[serde(skip)]
    published_at: DateTime<Utc>,
}

/// How long one kind of data is kept, in words.
#[derive(Serialize)]
struct Kept {
    what: &'static str,
    kept: String,
}

/// The current policy.
pub(crate) async fn current(State(state): State<AppState>) -> Result<Response, ApiError> {
    render(&state, None).await
}

/// An earlier (or the current) version, by id.
pub(crate) async fn version(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    render(&state, Some(id)).await
}

async fn render(state: &AppState, shown: Option<i64>) -> Result<Response, ApiError> {
    let versions: Vec<Version> = sqlx::query_as(
        "SELECT id, version, summary, published_at FROM policy_versions ORDER BY id DESC",
    )
    .fetch_all(&state.pool)
    .await
    .context("reading the policy versions")?;
    let latest = versions.first().map(|v| v.id);
    let shown = shown.or(latest);
    let current = match versions.iter().find(|v| Some(v.id) == shown) {
        Some(v) => {
            json!({"version": v.version, "summary": v.summary, "published": day(v.published_at)})
        }
        None if shown.is_none() => {
            json!({"version": "unpublished", "summary": "", "published": "not yet"})
        }
        None => {
            return Ok(page(
                StatusCode::NOT_FOUND,
                "No such version",
                "<p>This version of the privacy policy does not exist. \
                 <a href=\"/privacy\">Read the current policy</a>.</p>",
            ));
        }
    };
    let settings = &state.settings;
    let first = |words: &[String]| words.first().cloned().unwrap_or_default();
    let data = json!({
        "current": current,
        "latest": shown == latest,
        "retention": retention(settings),
        "export_keyword": first(&settings.keywords.export),
        "erase_keyword": first(&settings.keywords.erase),
        "deadline_hours": REPORT_DEADLINE_HOURS,
        "account_activity_days": settings.retention.account_activity_days,
        "versions": versions.iter().map(|v| json!({
            "id": v.id,
            "version": v.version,
            "published": day(v.published_at),
            "shown": Some(v.id) == shown,
        })).collect::<Vec<_>>(),
    });
    let body = TEMPLATES
        .render(TEMPLATE, &data)
        .context("rendering the privacy page")?;
    Ok(page(StatusCode::OK, "Privacy policy", &body))
}

/// Every kind of data we keep and for how long, from the settings that enforce it.
fn retention(settings: &Settings) -> Vec<Kept> {
    let retention = &settings.retention;
    vec![
        Kept {
            what: "Your Messenger id, first name and subscription",
            kept: format!(
                "until you ask us to delete them, or {} after you last wrote to the Page",
                words(u64::from(retention.inactive_subscriber_days) * DAY)
            ),
        },
        Kept {
            what: "That you unsubscribed",
            kept: format!(
                "{} after you unsubscribed; then only a keyed fingerprint of your Messenger id \
                 stays, so that you are never subscribed again by an import",
                words(u64::from(retention.unsubscribed_days) * DAY)
            ),
        },
        Kept {
            what: "Which messages were sent to you",
            kept: format!(
                "{} after the campaign ended (only totals remain)",
                words(u64::from(retention.deliveries_days) * DAY)
            ),
        },
        Kept {
            what: "A message you wrote to the Page (its sender, never its text)",
            kept: format!(
                "until it is processed, then a fingerprint of it for {} to recognise a duplicate",
                words(retention.webhook_events_secs)
            ),
        },
        Kept {
            what: "A copy of your data you asked for",
            kept: format!(
                "until you download it, or {} at most",
                words(u64::from(settings.privacy.export_ttl_days) * DAY)
            ),
        },
        Kept {
            what: "Who a request about your data was about",
            kept: "until the request is completed; the record that it was answered keeps \
                   nothing about you"
                .into(),
        },
        Kept {
            what: "A task about you that failed for good",
            kept: words(retention.finished_jobs_secs),
        },
    ]
}

const DAY: u64 = 86_400;

/// A duration in whole days, hours, minutes or seconds, whichever divides it.
fn words(secs: u64) -> String {
    let (n, unit) = [(DAY, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| secs >= *size && secs.is_multiple_of(*size))
        .map_or((secs, "second"), |(size, unit)| (secs / size, unit));
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn day(at: DateTime<Utc>) -> String {
    at.format("%-d %B %Y").to_string()
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn durations_read_in_the_largest_whole_unit() {
        assert_eq!(words(86_400), "1 day");
        assert_eq!(words(90 * 86_400), "90 days");
        assert_eq!(words(7_200), "2 hours");
        assert_eq!(words(90), "90 seconds");
    }
}
