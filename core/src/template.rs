//! Campaign message templates: handlebars, plain text (no HTML escaping), strict about missing
//! variables, and held to Messenger's 2,000-character limit once the unsubscribe line is added.
//!
//! A person's first name arrives after they opt in (the profile job) or never, so
//! `{{first_name}}` takes a fallback, `{{first_name default="there"}}`, or goes in a block,
//! `{{#if first_name}}Hi {{first_name}}{{else}}Hi{{/if}}`. A template is checked when its
//! campaign is created for a person with a name and for one without, so rendering at send time
//! cannot fail for anyone: a name too long for the limit falls back to the nameless text.

use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde::Serialize;

/// Messenger refuses a text longer than this many characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Characters kept free for the unsubscribe line when a template is checked (the line is
/// about 130 with a long public URL), so its length is refused at creation, not at send time.
pub const FOOTER_ALLOWANCE: usize = 200;

/// Why a template cannot be used or a message cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse.
    #[error("template does not parse: {0}")]
    Syntax(String),
    /// A variable the template uses has no value for this recipient, or is unknown.
    #[error("template cannot be rendered: {0}")]
    Render(String),
    /// The template cannot be rendered for a person whose name is not known (yet).
    #[error(
        "template cannot be rendered for a person without a first name: {0}; give it a \
         fallback, e.g. {{{{first_name default=\"there\"}}}}, or use \
         {{{{#if first_name}}}}…{{{{else}}}}…{{{{/if}}}}"
    )]
    NeedsFallback(String),
    /// The message would exceed Messenger's limit.
    #[error("message is {0} characters, more than Messenger's {MAX_TEXT_CHARS}")]
    TooLong(usize),
}

/// The variables a template may use; anything else is an error (strict mode).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Variables<'a> {
    /// The recipient's first name, once the profile job has fetched it; absent (not null)
    /// otherwise, so `{{#if first_name}}` is false and `{{first_name}}` takes its fallback.
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
const FIRST_NAME: &str = "first_name";

/// `{{first_name}}` and `{{first_name default="…"}}`: the name, else the fallback, else an
/// error naming the variable.
fn first_name(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    if !h.params().is_empty() || h.hash().keys().any(|key| *key != "default") {
        return Err(RenderErrorReason::Other(
            "`first_name` takes only a fallback: {{first_name default=\"there\"}}".into(),
        )
        .into());
    }
    let fallback = match h.hash_get("default") {
        Some(value) => Some(value.value().as_str().ok_or_else(|| {
            RenderErrorReason::Other("the fallback of `first_name` must be a quoted text".into())
        })?),
        None => None,
    };
    let name = ctx
        .data()
        .get(FIRST_NAME)
        .and_then(serde_json::Value::as_str)
        .filter(|name| !name.trim().is_empty());
    match name.or(fallback) {
        Some(text) => Ok(out.write(text)?),
        None => Err(RenderErrorReason::MissingVariable(Some(FIRST_NAME.into())).into()),
    }
}

impl Template {
    /// Compiles a template; errors name the problem so an admin can fix it.
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.register_helper(FIRST_NAME, Box::new(first_name));
        // `{{log first_name}}` would write a person's name to the logs.
        registry.unregister_helper("log");
        let compiled = handlebars::Template::compile(source)
            .map_err(|e| TemplateError::Syntax(e.to_string()))?;
        check_elements(&compiled, 0)?;
        registry.register_template(NAME, compiled);
        Ok(Template { registry })
    }

    /// Compiles and renders for a person whose name is not known and for one whose name is,
    /// from the campaign's Page, with room for the unsubscribe line: a template that could
    /// fail at send time is refused when the campaign is created.
    pub fn validate(source: &str, page_name: &str) -> Result<(), TemplateError> {
        let template = Template::compile(source)?;
        let footer = " ".repeat(FOOTER_ALLOWANCE);
        let nameless = Variables {
            first_name: None,
            page_name,
        };
        template
            .render_exactly(&nameless, &footer)
            .map_err(|error| match error {
                TemplateError::Render(reason) => TemplateError::NeedsFallback(reason),
                other => other,
            })?;
        template.render_exactly(
            &Variables {
                first_name: Some("Sample"),
                ..nameless
            },
            &footer,
        )?;
        Ok(())
    }

    /// Renders the text for one recipient and appends `footer` (the unsubscribe line). When
    /// their name is what makes it fail (too long for the limit), the text is the one for a
    /// person without a name, which [`Template::validate`] checked.
    pub fn render(&self, vars: &Variables<'_>, footer: &str) -> Result<String, TemplateError> {
        self.render_exactly(vars, footer)
            .or_else(|error| match vars.first_name {
                Some(_) => self.render_exactly(
                    &Variables {
                        first_name: None,
                        ..*vars
                    },
                    footer,
                ),
                None => Err(error),
            })
    }

    fn render_exactly(&self, vars: &Variables<'_>, footer: &str) -> Result<String, TemplateError> {
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

/// Blocks nested deeper than this are refused: a message needs a few, and rendering recurses
/// once per level.
const MAX_DEPTH: usize = 16;

/// Refuses what a message has no use for and that would let a template run away: partials
/// (`{{> message}}` renders itself without end) and decorators (`{{#*inline}}` defines
/// partials), and blocks nested deeper than [`MAX_DEPTH`].
fn check_elements(template: &handlebars::Template, depth: usize) -> Result<(), TemplateError> {
    use handlebars::template::TemplateElement as E;
    if depth > MAX_DEPTH {
        return Err(TemplateError::Syntax(format!(
            "blocks are nested more than {MAX_DEPTH} deep"
        )));
    }
    for element in &template.elements {
        match element {
            E::PartialExpression(_)
            | E::PartialBlock(_)
            | E::DecoratorExpression(_)
            | E::DecoratorBlock(_) => {
                return Err(TemplateError::Syntax(
                    "partials and decorators ({{> …}}, {{#> …}}, {{* …}}) are not supported".into(),
                ));
            }
            E::HelperBlock(block) => {
                for inner in [&block.template, &block.inverse].into_iter().flatten() {
                    check_elements(inner, depth + 1)?;
                }
            }
            // Text, expressions and comments.
            _ => {}
        }
    }
    Ok(())
}

/// The reason without the rendered data, so no personal value reaches an error message.
fn render_reason(error: &handlebars::RenderError) -> String {
    match error.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("variable `{path}` has no value")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod fuzz;
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
        let err = Template::validate("Hi {{nickname}}", "Moon Cafe")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nickname"), "{err}");
    }

    #[test]
    fn a_first_name_falls_back_to_its_default_or_a_block() {
        for source in [
            "Hi {{first_name default=\"there\"}}!",
            "Hi {{#if first_name}}{{first_name}}{{else}}there{{/if}}!",
        ] {
            let t = Template::compile(source).unwrap();
            assert_eq!(t.render(&vars(Some("Zoë")), "").unwrap(), "Hi Zoë!");
            assert_eq!(t.render(&vars(None), "").unwrap(), "Hi there!");
            Template::validate(source, "Moon Cafe").unwrap();
        }
    }

    #[test]
    fn a_template_that_fails_without_a_name_is_refused_naming_the_variable() {
        let err = Template::validate("Hi {{first_name}}!", "Moon Cafe").unwrap_err();
        assert!(matches!(err, TemplateError::NeedsFallback(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains("`first_name`"), "{message}");
        assert!(message.contains("default=\"there\""), "{message}");
        // Failing only with a name is refused too.
        let err = Template::validate("{{#if first_name}}{{nickname}}{{/if}}", "Moon Cafe")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nickname"), "{err}");
        let err = Template::validate("Hi {{first_name defualt=\"x\"}}", "Moon Cafe")
            .unwrap_err()
            .to_string();
        assert!(err.contains("takes only a fallback"), "{err}");
    }

    #[test]
    fn a_name_too_long_for_the_limit_gets_the_nameless_text() {
        let source = format!("{}{{{{first_name default=\"there\"}}}}", "a".repeat(1990));
        let t = Template::compile(&source).unwrap();
        let long = "N".repeat(20);
        let text = t.render(&vars(Some(&long)), "").unwrap();
        assert!(text.ends_with("there"), "{text}");
    }

    #[test]
    fn refuses_a_syntax_error() {
        assert!(matches!(
            Template::validate("Hi {{first_name", "Moon Cafe"),
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
        assert!(matches!(
            Template::validate(&"a".repeat(MAX_TEXT_CHARS - FOOTER_ALLOWANCE + 1), "P"),
            Err(TemplateError::TooLong(_))
        ));
    }
}
