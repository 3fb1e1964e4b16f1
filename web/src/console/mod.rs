//! The console for account holders: server-rendered pages (handlebars), working without
//! JavaScript (there is none), loading nothing from elsewhere, under a strict CSP. A browser
//! logs in with e-mail and password and holds a session cookie; there is no bearer token here
//! and no cookie on the API. The frame (layout, navigation, headers) is in [`frame`], the
//! session and CSRF check in [`session`]; each page is a module of its own.

mod activity;
mod frame;
mod login;
mod members;
mod session;
mod sessions_page;
mod tokens;
mod workspace;

use axum::Router;
use axum::middleware::from_fn;
use axum::routing::{get, post};

use crate::state::AppState;

/// Every console route, with the console's headers.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(activity::show))
        .route("/console/login", get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .route("/console/logout-everywhere", post(login::logout_everywhere))
        .route("/console/sessions", get(sessions_page::list))
        .route("/console/sessions/{id}/end", post(sessions_page::end))
        .route("/console/tokens", get(tokens::list).post(tokens::create))
        .route("/console/tokens/{id}/revoke", post(tokens::revoke))
        .route("/console/members", get(members::list))
        .route("/console/workspace", get(workspace::show))
        .route("/console/workspace/cancel", post(workspace::cancel))
        .route("/console/static/console.css", get(frame::stylesheet))
        .layer(from_fn(frame::headers))
}
