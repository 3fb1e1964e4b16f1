//! The console's frame, shared by every page: the templates (one layout with the navigation,
//! one template per page), the headers of every console response (a strict CSP that allows no
//! script at all and nothing from elsewhere, `no-store`), our own stylesheet, and the error page.
//! A new page adds its template to [`TEMPLATES`] and, if it belongs in the navigation, a link to
//! [`NAV`].

use std::sync::LazyLock;

use anyhow::Context as _;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use handlebars::Handlebars;
use serde_json::{Value, json};

use super::session::Console;

/// Every console page's template, by name (`web/templates/console/{name}.hbs`).
const TEMPLATES: &[(&str, &str)] = &[
    ("layout", include_str!("../../templates/console/layout.hbs")),
    ("login", include_str!("../../templates/console/login.hbs")),
    (
        "activity",
        include_str!("../../templates/console/activity.hbs"),
    ),
    (
        "sessions",
        include_str!("../../templates/console/sessions.hbs"),
    ),
    ("tokens", include_str!("../../templates/console/tokens.hbs")),
    (
        "members",
        include_str!("../../templates/console/members.hbs"),
    ),
    (
        "message",
        include_str!("../../templates/console/message.hbs"),
    ),
    (
        "workspace",
        include_str!("../../templates/console/workspace.hbs"),
    ),
];

/// The navigation of a logged-in page: path and label.
const NAV: &[(&str, &str)] = &[
    ("/console", "Activity"),
    ("/console/sessions", "Sessions"),
    ("/console/tokens", "API tokens"),
    ("/console/members", "Members"),
    ("/console/workspace", "Workspace"),
];

/// Scripts are not allowed at all; styles, images and forms only from us; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's only stylesheet.
const STYLESHEET: &str = include_str!("../../static/console.css");

static REGISTRY: LazyLock<Handlebars<'static>> = LazyLock::new(|| {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    for (name, template) in TEMPLATES {
        registry
            .register_template_string(name, template)
            .unwrap_or_else(|e| panic!("the console template {name} parses: {e}"));
    }
    registry
});

/// Adds the console's headers to every console response (pages, redirects, errors, the
/// stylesheet): they reflect one person's account, so nothing may cache them.
pub(crate) async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /console/static/console.css`.
pub(crate) async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
        .into_response()
}

/// A page rendered inside the layout: with the navigation and the logout buttons when someone
/// is logged in.
pub(crate) fn render(
    status: StatusCode,
    template: &str,
    title: &str,
    console: Option<&Console>,
    data: &Value,
) -> Result<Response, ConsoleError> {
    let body = REGISTRY
        .render(template, data)
        .with_context(|| format!("rendering the console page {template}"))?;
    let nav: Vec<Value> = console
        .map(|_| {
            NAV.iter()
                .map(|(path, label)| json!({"path": path, "label": label}))
                .collect()
        })
        .unwrap_or_default();
    let page = REGISTRY
        .render(
            "layout",
            &json!({
                "title": title,
                "body": body,
                "nav": nav,
                "csrf": console.map(|c| c.csrf.clone()),
            }),
        )
        .context("rendering the console layout")?;
    Ok((status, Html(page)).into_response())
}

/// A short page that says one thing, with a link onwards.
pub(crate) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    console: Option<&Console>,
) -> Response {
    render(status, "message", title, console, &json!({"text": text}))
        .unwrap_or_else(IntoResponse::into_response)
}

/// A time as the console shows it.
pub(crate) fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Why a console request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    /// No live session: go and log in.
    #[error("not logged in")]
    LoggedOut,
    /// A form without the session's CSRF token.
    #[error("this form has expired; reload the page and try again")]
    Csrf,
    /// No such object of the user's.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// Anything else: logged, answered generically.
    #[error("something went wrong on our side; try again later")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::LoggedOut => Redirect::to("/console/login").into_response(),
            ConsoleError::Csrf => {
                message(StatusCode::FORBIDDEN, "Refused", &self.to_string(), None)
            }
            ConsoleError::NotFound(_) => {
                message(StatusCode::NOT_FOUND, "Not found", &self.to_string(), None)
            }
            ConsoleError::Internal(ref error) => {
                tracing::error!(error = %format!("{error:#}"), "console request failed");
                message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error",
                    &self.to_string(),
                    None,
                )
            }
        }
    }
}
