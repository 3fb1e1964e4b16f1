//! What every response gets: security headers, no cookie outside the console, HTTPS
//! enforcement behind a proxy, and a time limit that answers in the error shape.

use std::sync::Arc;

use axum::BoxError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::ApiError;

/// Which protections apply: fixed at start from the `web` settings.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The process terminates TLS itself: every response is over HTTPS.
    pub tls: bool,
    /// Behind a proxy: plain-HTTP requests are redirected.
    pub require_https: bool,
    /// Where redirects point; the request's `Host` otherwise.
    pub public_base_url: Option<String>,
}

/// No scripts, no framing, no referrer (the unsubscribe link carries a token), forms only to us.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// One year, subdomains included.
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Redirects plain HTTP when HTTPS is required, then adds the security headers and strips any
/// `Set-Cookie` a handler might ever add outside `/console/` (whose session cookie is the
/// point): public pages and the API set no cookie, structurally. A response that brings its
/// own, stricter CSP (the console's) keeps it.
pub(crate) async fn secure(
    State(policy): State<Arc<Policy>>,
    request: Request,
    next: Next,
) -> Response {
    let forwarded = forwarded_proto(request.headers());
    if policy.require_https && !policy.tls && forwarded.as_deref() == Some("http") {
        return https_redirect(&policy, &request);
    }
    let https = policy.tls || (policy.require_https && forwarded.as_deref() == Some("https"));
    let console = request.uri().path().starts_with("/console/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !console {
        headers.remove(header::SET_COOKIE);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A page with a stricter policy of its own (the console's) keeps it.
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}

/// The first protocol of `X-Forwarded-Proto`, lower-cased.
fn forwarded_proto(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-forwarded-proto")?.to_str().ok()?;
    Some(value.split(',').next()?.trim().to_ascii_lowercase())
}

/// A permanent redirect that keeps the method (a webhook POST stays a POST).
fn https_redirect(policy: &Policy, request: &Request) -> Response {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let base = match &policy.public_base_url {
        Some(base) => base.replacen("http://", "https://", 1),
        None => match request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
        {
            Some(host) => format!("https://{host}"),
            None => return ApiError::BadRequest("HTTPS is required".into()).into_response(),
        },
    };
    Redirect::permanent(&format!("{base}{path}")).into_response()
}

/// Turns the time limit's error into the error shape (the only error the layers produce).
pub(crate) async fn timed_out(error: BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::Timeout.into_response()
    } else {
        ApiError::Internal(anyhow::anyhow!("middleware failed: {error}")).into_response()
    }
}

/// Runs the rest of the request in its own task and waits for it. A client that hangs up (or
/// the time limit) then drops only this wait, never a handler half-way through its database
/// work: what a request started is stored whole or not at all, and no connection goes back to
/// the pool inside an open transaction, where the next request's writes would run.
pub(crate) async fn run_to_completion(request: Request, next: Next) -> Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(error) => {
            ApiError::Internal(anyhow::anyhow!("request task failed: {error}")).into_response()
        }
    }
}
