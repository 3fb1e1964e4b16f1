//! What the document says a body accepts, exactly as the handlers accept it, so a client (or a
//! fuzzer) reading the document can build every valid request: enumerations from the domain's
//! own lists, text that must not be blank, and integers as JSON Schema counts them.

use moonengage_accounts::Role;
use moonengage_privacy::dsr::DsrType;
use moonengage_privacy::incidents::{DataCategory, IncidentStatus};
use serde::de::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{OpenApi as Document, RefOr, Schema};

/// Rust's white space (`char::is_whitespace`, what `trim` removes), as a regular-expression
/// class: a field that must not be blank holds at least one character outside it.
const NOT_BLANK: &str =
    "[^\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// Gives every text field documented with `min_length = 1` the pattern of a text that is not
/// blank (the handlers trim before checking): the convention of this API's annotations.
pub(crate) fn not_blank(document: &mut Document) {
    let Some(components) = document.components.as_mut() else {
        return;
    };
    for schema in components.schemas.values_mut() {
        let RefOr::T(Schema::Object(object)) = schema else {
            continue;
        };
        for property in object.properties.values_mut() {
            if let RefOr::T(Schema::Object(field)) = property
                && field.min_length == Some(1)
                && field.pattern.is_none()
            {
                field.pattern = Some(NOT_BLANK.to_owned());
            }
        }
    }
}

/// A text field that is one of `names`, or `null` (absent) when `nullable`.
fn one_of(names: impl IntoIterator<Item = &'static str>, nullable: bool) -> ObjectBuilder {
    let mut values: Vec<Value> = names.into_iter().map(Value::from).collect();
    let kind = if nullable {
        values.push(Value::Null);
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    };
    ObjectBuilder::new()
        .schema_type(kind)
        .enum_values(Some(values))
}

/// The roles a token can be given (absent: the creator's own).
pub(crate) fn optional_role() -> ObjectBuilder {
    one_of(Role::ALL.map(Role::as_str), true)
}

/// A member's role, always named.
pub(crate) fn role() -> ObjectBuilder {
    one_of(Role::ALL.map(Role::as_str), false)
}

/// The kinds of data-subject request.
pub(crate) fn request_type() -> ObjectBuilder {
    let kinds = [DsrType::Export, DsrType::Erasure, DsrType::Objection];
    one_of(kinds.map(DsrType::as_str), false)
}

/// An incident's statuses (absent: unchanged).
pub(crate) fn incident_status() -> ObjectBuilder {
    let all = [
        IncidentStatus::Open,
        IncidentStatus::Reported,
        IncidentStatus::Closed,
    ];
    one_of(all.map(IncidentStatus::as_str), true)
}

/// At least one category of data, from the fixed list.
pub(crate) fn categories() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(one_of(DataCategory::ALL.map(DataCategory::as_str), false))
        .min_items(Some(1))
}

/// [`categories`], or `null` (absent: unchanged).
pub(crate) fn optional_categories() -> ArrayBuilder {
    categories().schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
}

/// A JSON number that is an integer as JSON Schema counts them (`5` and `5.0`), in `T`'s range.
fn integral<T: TryFrom<i64>, E: serde::de::Error>(number: &serde_json::Number) -> Result<T, E> {
    let value = match number.as_i64() {
        Some(value) => value,
        None => match number.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => f as i64,
            _ => return Err(E::custom(format!("{number} is not an integer in range"))),
        },
    };
    T::try_from(value).map_err(|_| E::custom(format!("{number} is out of range")))
}

/// Reads an integer field (see [`integral`]).
pub(crate) fn integer<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    integral(&serde_json::Number::deserialize(d)?)
}

/// Reads an optional integer field (see [`integral`]); use with `#[serde(default)]`.
pub(crate) fn optional_integer<'de, D: Deserializer<'de>, T: TryFrom<i64>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(|number| integral(&number))
        .transpose()
}
