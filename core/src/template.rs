//! Campaign message templates: handlebars, plain text (no HTML escaping), strict about missing
//! variables, and held to Messenger's 2,000-character limit once the unsubscribe line is added.

use handlebars::Handlebars;
use serde::Serialize;

/// Messenger refuses a text longer than this many characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Why a template cannot be used or a message cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse.
    #[error("template does not parse: {0}")]
    Syntax(String),
    /// A variable the template uses has no value for this recipient, or is unknown.
    #[error("template cannot be rendered: {0}")]
    Render(String),
    /// The message would exceed Messenger's limit.
    #[error("message is {0} characters, more than Messenger's {MAX_TEXT_CHARS}")]
    TooLong(usize),
}

/// The variables a template may use; anything else is an error (strict mode).
#[derive(Debug, Serialize)]
pub struct Variables<'a> {
    /// The recipient's first name, when the Page keeps it; absent (not null) otherwise, so strict
    /// mode refuses a template that needs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<&'a str>,
    /// The Page's name.
    pub page_name: &'a str,
}

/// A compiled template, reused for every recipient of a campaign.
#[derive(Debug)]
pub struct Template {
    registry: Handlebars<'static>,
}

const NAME: &str = "message";

impl Template {
    /// Compiles a template; errors name the problem so an admin can fix it.
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry
            .register_template_string(NAME, source)
            .map_err(|e| TemplateError::Syntax(e.to_string()))?;
        Ok(Template { registry })
    }

    /// Compiles and renders with sample values, so a broken template is refused when the
    /// campaign is created rather than at send time.
    pub fn validate(source: &str) -> Result<(), TemplateError> {
        let template = Template::compile(source)?;
        template.render(
            &Variables {
                first_name: Some("Sample"),
                page_name: "Sample Page",
            },
            "",
        )?;
        Ok(())
    }

    /// Renders the text for one recipient and appends `footer` (the unsubscribe line).
    pub fn render(&self, vars: &Variables<'_>, footer: &str) -> Result<String, TemplateError> {
        let mut text = self
            .registry
            .render(NAME, vars)
            .map_err(|e| TemplateError::Render(render_reason(&e)))?;
        text.push_str(footer);
        // handlebars renders into an 8 KiB buffer; a message is held for the whole send, so
        // with a thousand in flight the slack alone would be 8 MiB.
        text.shrink_to_fit();
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(TemplateError::TooLong(chars));
        }
        Ok(text)
    }
}

/// The reason without the rendered data, so no personal value reaches an error message.
fn render_reason(error: &handlebars::RenderError) -> String {
    match error.reason() {
        handlebars::RenderErrorReason::MissingVariable(Some(path)) => {
            format!("variable `{path}` has no value")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(first_name: Option<&str>) -> Variables<'_> {
        Variables {
            first_name,
            page_name: "Moon Cafe",
        }
    }

    #[test]
    fn renders_without_html_escaping() {
        let t = Template::compile("Hi {{first_name}} & <friends> from {{page_name}}").unwrap();
        assert_eq!(
            t.render(&vars(Some("Zoë")), "").unwrap(),
            "Hi Zoë & <friends> from Moon Cafe"
        );
    }

    #[test]
    fn is_strict_about_missing_and_unknown_variables() {
        let t = Template::compile("Hi {{first_name}}").unwrap();
        let err = t.render(&vars(None), "").unwrap_err().to_string();
        assert!(err.contains("first_name"), "{err}");
        let err = Template::validate("Hi {{nickname}}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nickname"), "{err}");
    }

    #[test]
    fn refuses_a_syntax_error() {
        assert!(matches!(
            Template::validate("Hi {{first_name"),
            Err(TemplateError::Syntax(_))
        ));
    }

    #[test]
    fn counts_the_footer_against_the_limit() {
        let t = Template::compile(&"a".repeat(1990)).unwrap();
        assert!(t.render(&vars(None), "0123456789").is_ok());
        assert!(matches!(
            t.render(&vars(None), "0123456789X"),
            Err(TemplateError::TooLong(2001))
        ));
    }
}
