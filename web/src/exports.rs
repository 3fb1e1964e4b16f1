//! `/exports/{token}`: a person's data export, downloaded once. `GET` only shows a page with a
//! download button, because link previews (Messenger fetches every link it shows) would
//! otherwise use up the one download; `POST` hands the JSON over and deletes the export.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use moonengage_ops::metrics;
use moonengage_privacy::exports::{self, Taken};

use crate::error::ApiError;
use crate::state::AppState;
use crate::unsubscribe::page;

/// Shows the download button while the export is there to download.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    Ok(match exports::peek(&state.pool, &token).await? {
        exports::Peeked::Ready => page(
            StatusCode::OK,
            "Your data export",
            &format!(
                "<p>This is a copy of the data held about you, as a JSON file. The link works \
                 once: after the download, the copy is deleted from our servers.</p>\
                 <form method=\"post\" action=\"/exports/{token}\">\
                 <button type=\"submit\">Download</button></form>"
            ),
        ),
        exports::Peeked::Expired => expired(),
        exports::Peeked::Gone => gone(),
    })
}

/// Hands the export over once; the row is gone afterwards.
pub(crate) async fn download(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    Ok(
        match exports::take(&state.pool, &state.keyring, &token).await? {
            Taken::Json(json) => {
                metrics::export_downloaded();
                (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"my-data.json\"",
                        ),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    json,
                )
                    .into_response()
            }
            Taken::Expired => expired(),
            Taken::Gone => gone(),
        },
    )
}

fn expired() -> Response {
    page(
        StatusCode::GONE,
        "This link has expired",
        "<p>Download links work for a limited time, and this export has now been deleted. \
         To get a new copy, write EXPORT MY DATA in your conversation with the Page.</p>",
    )
}

fn gone() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "This link does not work any more",
        "<p>A download link works once: this export was downloaded already, has expired or was \
         never issued. To get a new copy, write EXPORT MY DATA in your conversation with the \
         Page.</p>",
    )
}
