//! The OpenAPI document's frame: its description, the bearer scheme, and the error answers
//! every operation can give for the same reasons (a malformed request, no token, a role too
//! low, an object the workspace does not have, an invalid body), added to each operation
//! from its shape so no handler's annotation can forget one.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The name of the shared error response in `components.responses`.
const ERROR: &str = "Error";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "MoonEngage admin API",
        description = "Pages, campaigns, subscribers and data-subject requests of your \
                       workspace; policy versions and the breach register for MoonEngage's \
                       operators. Every call needs `Authorization: Bearer <token>` (a personal \
                       token: it acts in its workspace with its role; writes need `admin`). \
                       Another workspace's objects answer 404. Errors are \
                       `{\"error\":{\"code\",\"message\"}}`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub(crate) struct ApiDoc;

/// Declares the bearer scheme the `security` requirement refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// Adds the error answers that follow from an operation's shape; applied to the whole document
/// once every route is in it.
pub(crate) struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut Document) {
        let error = ResponseBuilder::new()
            .description("`{\"error\":{\"code\",\"message\"}}`")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.responses.insert(ERROR.into(), error.into());
        for item in openapi.paths.paths.values_mut() {
            for_each_operation(item, add_errors);
        }
    }
}

/// Calls `f` with each operation of a path and whether it writes.
fn for_each_operation(item: &mut PathItem, f: fn(&mut Operation, bool)) {
    for (operation, writes) in [
        (&mut item.get, false),
        (&mut item.post, true),
        (&mut item.put, true),
        (&mut item.patch, true),
        (&mut item.delete, true),
    ] {
        if let Some(operation) = operation {
            f(operation, writes);
        }
    }
}

fn add_errors(operation: &mut Operation, writes: bool) {
    let has_path = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    let has_body = operation.request_body.is_some();
    let mut codes = vec!["401"];
    if has_path || has_body {
        codes.push("400");
    }
    if writes {
        codes.push("403");
    }
    if has_path {
        codes.push("404");
    }
    if has_body {
        codes.push("422");
    }
    for code in codes {
        operation
            .responses
            .responses
            .entry(code.into())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(ERROR)));
    }
}
