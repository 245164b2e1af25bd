//! Rendering node configs: every string is a minijinja template over
//! `{input, nodes.<id>.output, execution}`. Undefined variables are errors that name the
//! variable, never silent empty text. A string that is exactly one `{{ expression }}` keeps the
//! expression's JSON type (an object stays an object).

use crate::model::StepErrorCode;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value as JinjaValue};
use serde_json::Value;
use std::sync::OnceLock;

/// A template that could not be rendered: its step error code (`TEMPLATE_*`, see
/// `model::StepErrorCode`) and a message naming the cause. Nodes turn it into a permanent
/// node failure (`From` in `nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub code: StepErrorCode,
    pub message: String,
}

impl TemplateError {
    fn new(code: StepErrorCode, message: impl Into<String>) -> Self {
        TemplateError { code, message: message.into() }
    }
}

/// Rendering work is bounded: a template cannot loop forever or build huge strings.
const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// The one minijinja environment (strict about undefined names): rendering here, and the
/// syntax and variable checks of `validation`.
pub fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env
    })
}

/// The first dotted variable path the template uses that the scope does not define.
fn first_undefined(paths: impl IntoIterator<Item = String>, scope: &Value) -> Option<String> {
    let mut paths: Vec<String> = paths.into_iter().collect();
    paths.sort();
    paths.into_iter().find(|path| {
        let mut current = scope;
        for part in path.split('.') {
            match current.get(part) {
                Some(next) => current = next,
                None => return true,
            }
        }
        false
    })
}

fn undefined(path: &str, scope: &Value) -> TemplateError {
    let mut message = format!("'{path}' is not defined at this point of the run");
    // Validation lets templates read upstream nodes only, so a node missing from the scope was
    // skipped: say so, and how to read a node that may not run.
    let mut parts = path.split('.');
    if let (Some("nodes"), Some(node)) = (parts.next(), parts.next()) {
        match scope["nodes"].get(node) {
            None => message.push_str(&format!(
                ": node '{node}' was skipped (its branch was not taken); read it behind \
                 `{{% if nodes.{node} is defined %}}` or with `| default(...)`"
            )),
            Some(result) if !result["error"].is_null() => message.push_str(&format!(
                ": node '{node}' failed ({}) and went on with a null output",
                result["error"]["code"].as_str().unwrap_or("an error")
            )),
            Some(_) => {}
        }
    }
    TemplateError::new(StepErrorCode::TemplateUndefinedVariable, message)
}

/// A render error; an undefined variable is named (found by walking the scope, since
/// minijinja's strict-mode error does not carry the name). Checked only after a failure, so
/// `default(...)` and `is defined` keep working on optional values.
fn failure(
    e: minijinja::Error,
    variables: impl FnOnce() -> std::collections::HashSet<String>,
    scope: &Value,
) -> TemplateError {
    if e.kind() == minijinja::ErrorKind::UndefinedError
        && let Some(path) = first_undefined(variables(), scope)
    {
        return undefined(&path, scope);
    }
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        return TemplateError::new(
            StepErrorCode::TemplateUndefinedVariable,
            "a variable is not defined at this point of the run",
        );
    }
    render_error(e)
}

/// An expression whose whole value is undefined (a bare misspelt variable): an error, not null.
fn undefined_result(variables: std::collections::HashSet<String>, scope: &Value) -> TemplateError {
    match first_undefined(variables, scope) {
        Some(path) => undefined(&path, scope),
        None => TemplateError::new(StepErrorCode::TemplateUndefinedVariable, "the expression's value is undefined"),
    }
}

fn render_error(e: minijinja::Error) -> TemplateError {
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    TemplateError::new(StepErrorCode::TemplateRenderError, format!("{}{detail}", e.kind()))
}

/// Renders one string.
pub fn render_string(source: &str, scope: &Value) -> Result<Value, TemplateError> {
    if !(source.contains("{{") || source.contains("{%")) {
        return Ok(Value::String(source.to_string()));
    }
    let env = environment();
    let context = JinjaValue::from(Serde(scope));
    let trimmed = source.trim();
    let single = trimmed.strip_prefix("{{").and_then(|s| s.strip_suffix("}}"));
    if let Some(expression) = single.filter(|e| !e.contains("{{") && !e.contains("}}")) {
        let compiled = env.compile_expression(expression).map_err(render_error)?;
        let value = compiled.eval(context).map_err(|e| failure(e, || compiled.undeclared_variables(true), scope))?;
        if value.is_undefined() {
            return Err(undefined_result(compiled.undeclared_variables(true), scope));
        }
        return serde_json::to_value(&value)
            .map_err(|e| TemplateError::new(StepErrorCode::TemplateRenderError, e.to_string()));
    }
    let template = env.template_from_str(source).map_err(render_error)?;
    let text = template.render(context).map_err(|e| failure(e, || template.undeclared_variables(true), scope))?;
    if text.len() > MAX_RENDERED_BYTES {
        return Err(TemplateError::new(StepErrorCode::TemplateOutputTooLarge, "the rendered text is over 1 MiB"));
    }
    Ok(Value::String(text))
}

/// Evaluates a minijinja expression to a boolean (logic.condition).
pub fn evaluate_condition(expression: &str, scope: &Value) -> Result<bool, TemplateError> {
    let compiled = environment().compile_expression(expression).map_err(render_error)?;
    let value = compiled
        .eval(JinjaValue::from(Serde(scope)))
        .map_err(|e| failure(e, || compiled.undeclared_variables(true), scope))?;
    if value.is_undefined() {
        return Err(undefined_result(compiled.undeclared_variables(true), scope));
    }
    Ok(value.is_true())
}

/// Renders every string in a JSON value, keeping its shape.
pub fn render_value(value: &Value, scope: &Value) -> Result<Value, TemplateError> {
    match value {
        Value::String(s) => render_string(s, scope),
        Value::Array(items) => items.iter().map(|v| render_value(v, scope)).collect::<Result<_, _>>().map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_value(v, scope)?)))
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Value {
        json!({ "input": { "name": "Ada", "n": 3 }, "nodes": { "fetch": { "output": { "status": 200, "body": { "a": [1, 2] } } } } })
    }

    #[test]
    fn text_and_typed_rendering() {
        assert_eq!(render_string("Hello {{ input.name }}!", &scope()).unwrap(), json!("Hello Ada!"));
        assert_eq!(render_string("{{ nodes.fetch.output.body }}", &scope()).unwrap(), json!({ "a": [1, 2] }));
        assert_eq!(render_string(" {{ input.n * 2 }} ", &scope()).unwrap(), json!(6));
        assert_eq!(render_string("plain", &scope()).unwrap(), json!("plain"));
        assert_eq!(
            render_value(&json!({ "k": ["{{ input.name }}", 1] }), &scope()).unwrap(),
            json!({ "k": ["Ada", 1] })
        );
    }

    #[test]
    fn undefined_variables_are_errors_that_name_them() {
        let err = render_string("Hi {{ input.missing }}", &scope()).unwrap_err();
        assert_eq!(err.code, StepErrorCode::TemplateUndefinedVariable);
        assert!(err.message.contains("input.missing"), "{}", err.message);
        let err = render_string("{{ nodes.ghost.output }}", &scope()).unwrap_err();
        assert!(err.message.contains("nodes.ghost"), "{}", err.message);
        assert!(!crate::engine::NodeFailure::from(err.clone()).retryable, "a template error is permanent");
        // Why a node's output is missing: it was skipped, or it failed under on_error continue.
        assert!(
            err.message.contains("node 'ghost' was skipped") && err.message.contains("is defined"),
            "{}",
            err.message
        );
        let mut scope = scope();
        scope["nodes"]["flaky"] = json!({ "output": null, "error": { "code": "HTTP_503", "message": "down" } });
        let err = render_string("{{ nodes.flaky.output.body }}", &scope).unwrap_err();
        assert!(
            err.message.ends_with("node 'flaky' failed (HTTP_503) and went on with a null output"),
            "{}",
            err.message
        );
        let err = render_string("{{ input.missing }}", &scope).unwrap_err();
        assert!(!err.message.contains("skipped"), "{}", err.message);
    }

    #[test]
    fn optional_values_can_be_defaulted_or_tested() {
        assert_eq!(render_string("{{ input.vip | default(false) }}", &scope()).unwrap(), json!(false));
        assert_eq!(
            render_string("{% if input.vip is defined %}vip{% else %}guest{% endif %}", &scope()).unwrap(),
            json!("guest")
        );
        assert!(!evaluate_condition("input.vip | default(false)", &scope()).unwrap());
    }

    #[test]
    fn conditions_are_truthy() {
        assert!(evaluate_condition("nodes.fetch.output.status == 200", &scope()).unwrap());
        assert!(!evaluate_condition("input.n > 5", &scope()).unwrap());
        assert!(evaluate_condition("input.nope", &scope()).is_err());
    }

    #[test]
    fn template_text_is_data_not_code() {
        // What a template renders is output; it is never evaluated again.
        let scope = json!({ "input": { "evil": "{{ input.secret }}", "secret": "s3cr3t" } });
        assert_eq!(render_string("{{ input.evil }}", &scope).unwrap(), json!("{{ input.secret }}"));
    }
}
