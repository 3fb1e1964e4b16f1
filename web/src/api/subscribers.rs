//! Subscribers: import from CSV or JSON with consent evidence on every row (all or nothing: a
//! bad row is reported by its line and nothing is imported), and counts by status.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::{Extension, Json};
use chrono::{DateTime, Duration, Utc};
use moonengage_accounts::{Principal, Role};
use moonengage_core::pages;
use moonengage_core::subscribers::{self, NewSubscriber};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiPath, ErrorBody};
use crate::state::AppState;

/// Clock skew tolerated on an opt-in time; later is in the future, so not evidence.
const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// One row of an import (a CSV line with these headers, or a JSON object).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub(crate) struct ImportRow {
    /// The person's page-scoped id (digits).
    #[schema(required = true, value_type = String, pattern = "^[0-9]{1,64}$")]
    psid: Option<String>,
    /// First name, if the Page keeps it.
    first_name: Option<String>,
    /// Consent evidence: when they opted in (RFC 3339; not in the future).
    #[schema(required = true, value_type = String, format = DateTime)]
    opted_in_at: Option<String>,
    /// Consent evidence: how they opted in (e.g. `messenger`).
    #[schema(required = true, value_type = String, min_length = 1)]
    consent_source: Option<String>,
    /// Their last message to the Page (RFC 3339); the opt-in time when absent.
    #[schema(value_type = Option<String>, format = DateTime)]
    last_interaction_at: Option<String>,
}

/// What an import did.
#[derive(Serialize, ToSchema)]
pub(crate) struct ImportResult {
    /// Rows in the file.
    received: usize,
    /// People added.
    imported: u64,
    /// People the Page had already (left as they were).
    already_known: u64,
}

/// A Page's subscribers by status.
#[derive(Serialize, ToSchema)]
pub(crate) struct CountsView {
    active: i64,
    unsubscribed: i64,
    unreachable: i64,
    /// Active and inside the 24-hour window.
    in_window: i64,
}

/// Imports subscribers into a Page: `text/csv` (a header line, then one person per line) or
/// `application/json` (an array of objects).
#[utoipa::path(post, path = "/api/v1/pages/{id}/subscribers/import", tag = "subscribers",
    params(("id" = i64, Path, description = "Page id")),
    request_body(content = Vec<ImportRow>, content_type = "application/json",
                 description = "Or text/csv with the same columns"),
    responses((status = 200, body = ImportResult), (status = 404, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn import(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportResult>, ApiError> {
    principal.require(Role::Admin)?;
    let limit = state.settings.web.max_import_bytes;
    let body = body.map_err(|rejection| ApiError::from_body(rejection, limit))?;
    let fb_page_id = pages::fb_page_id(&state.pool, principal.workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound("page"))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let rows = if content_type.starts_with("text/csv") {
        csv_rows(&body)?
    } else if content_type.starts_with("application/json") {
        json_rows(&body)?
    } else {
        return Err(ApiError::BadRequest(
            "Content-Type must be text/csv or application/json".into(),
        ));
    };
    let now = Utc::now();
    let people = rows
        .into_iter()
        .map(|(place, row)| validate(row, now).map_err(|reason| invalid_row(&place, &reason)))
        .collect::<Result<Vec<NewSubscriber>, ApiError>>()?;
    // One statement: the import is all or nothing.
    let imported =
        subscribers::insert_batch(&state.pool, &state.keyring, id, &fb_page_id, &people).await?;
    tracing::info!(
        page_id = id,
        rows = people.len(),
        imported,
        "subscribers imported"
    );
    Ok(Json(ImportResult {
        received: people.len(),
        imported,
        already_known: people.len() as u64 - imported,
    }))
}

fn invalid_row(place: &str, reason: &str) -> ApiError {
    ApiError::Unprocessable {
        code: "invalid_row",
        message: format!("{place}: {reason}; nothing was imported"),
    }
}

/// Rows of a CSV file, each with its line number.
fn csv_rows(body: &[u8]) -> Result<Vec<(String, ImportRow)>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| invalid_row("line 1", &e.to_string()))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            invalid_row(&format!("line {line}"), "not a valid CSV record")
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let row = record
            .deserialize(Some(&headers))
            .map_err(|e| invalid_row(&format!("line {line}"), &e.to_string()))?;
        rows.push((format!("line {line}"), row));
    }
    Ok(rows)
}

/// Rows of a JSON array, each with its position (row 1 is the first element).
fn json_rows(body: &[u8]) -> Result<Vec<(String, ImportRow)>, ApiError> {
    let values: Vec<serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not a JSON array: {e}")))?;
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let place = format!("row {}", i + 1);
            serde_json::from_value(value)
                .map(|row| (place.clone(), row))
                .map_err(|e| invalid_row(&place, &e.to_string()))
        })
        .collect()
}

/// A row with its consent evidence checked.
fn validate(row: ImportRow, now: DateTime<Utc>) -> Result<NewSubscriber, String> {
    let texts = [
        &row.psid,
        &row.first_name,
        &row.opted_in_at,
        &row.consent_source,
        &row.last_interaction_at,
    ];
    if texts.into_iter().flatten().any(|text| text.contains('\0')) {
        return Err("text must not contain U+0000 (NUL)".into());
    }
    let present = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let psid = present(row.psid).ok_or("psid is missing")?;
    if psid.len() > 64 || !psid.bytes().all(|b| b.is_ascii_digit()) {
        return Err("psid must be digits".into());
    }
    let time = |field: &str, value: String| {
        DateTime::parse_from_rfc3339(value.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| format!("{field} is not an RFC 3339 time"))
    };
    let opted_in_at = time(
        "opted_in_at",
        present(row.opted_in_at).ok_or("opted_in_at (consent evidence) is missing")?,
    )?;
    if opted_in_at > now + MAX_CLOCK_SKEW {
        return Err("opted_in_at is in the future".into());
    }
    let consent_source =
        present(row.consent_source).ok_or("consent_source (consent evidence) is missing")?;
    let last_interaction_at = match present(row.last_interaction_at) {
        Some(value) => time("last_interaction_at", value)?.min(now),
        None => opted_in_at,
    };
    Ok(NewSubscriber {
        psid,
        first_name: present(row.first_name),
        opted_in_at,
        consent_source,
        last_interaction_at,
    })
}

/// Counts a Page's subscribers by status.
#[utoipa::path(get, path = "/api/v1/pages/{id}/subscribers/counts", tag = "subscribers",
    params(("id" = i64, Path, description = "Page id")),
    responses((status = 200, body = CountsView), (status = 404, body = ErrorBody)))]
pub(crate) async fn counts(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CountsView>, ApiError> {
    let c = subscribers::counts(&state.pool, principal.workspace_id, id)
        .await?
        .ok_or(ApiError::NotFound("page"))?;
    Ok(Json(CountsView {
        active: c.active,
        unsubscribed: c.unsubscribed,
        unreachable: c.unreachable,
        in_window: c.in_window,
    }))
}
