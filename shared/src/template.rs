//! Rendering node configs: every string is a minijinja template over
//! `{input, nodes.<id>.output, execution}`. Undefined variables are errors that name the
//! variable, never silent empty text. A string that is exactly one `{{ expression }}` keeps the
//! expression's JSON type (an object stays an object).

use crate::model::StepErrorCode;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value as JinjaValue};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

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

/// The most bytes a rendered string, or any string or JSON value a template builds on the way,
/// may hold: 1 MiB. The operators `*`, `~` and `+` are bounded in minijinja itself (patched,
/// vendor/minijinja/PATCHES.md); the filters that can amplify are wrapped here.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// The work one template string may do, in minijinja fuel (about one unit per VM instruction):
/// 5 million, tens of milliseconds of CPU in a release build. Past it the node fails with
/// `TEMPLATE_WORK_LIMIT`, whatever its timeout.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// The most items a sequence built by a filter (`batch`, `slice`) may hold, as minijinja's
/// patched `*` and `+` allow.
const MAX_BUILT_ITEMS: usize = 100_000;

/// The largest `indent` width `tojson` accepts.
const MAX_JSON_INDENT: usize = 16;

/// The one minijinja environment (strict about undefined names, with a work budget and
/// size-checked filters): rendering here, and the syntax and variable checks of `validation`.
pub fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        // A debugging aid with no bound on its output; `tojson` says the same.
        env.remove_filter("pprint");
        guard_amplifying_filters(&mut env);
        env
    })
}

/// A `Write` that refuses to grow past `limit` bytes; `over` tells a refusal from other errors.
struct Bounded {
    written: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Bounded {
    fn new(limit: usize) -> Self {
        Bounded { written: Vec::new(), limit, over: false }
    }
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written.len() + buf.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("over the size limit"));
        }
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        std::io::Write::write_all(self, s.as_bytes()).map_err(|_| std::fmt::Error)
    }
}

/// The size of `value` as text (its `Display`), or None past `limit`: stops writing there.
fn text_size(value: &JinjaValue, limit: usize) -> Option<usize> {
    let mut out = Bounded::new(limit);
    std::fmt::Write::write_fmt(&mut out, format_args!("{value}")).ok().map(|_| out.written.len())
}

/// The size of `value` as compact JSON, or None past `limit`.
fn json_size(value: &JinjaValue, limit: usize) -> Option<usize> {
    let mut out = Bounded::new(limit);
    serde_json::to_writer(&mut out, value).ok().map(|_| out.written.len())
}

fn too_large(what: &str) -> minijinja::Error {
    minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        format!("{what} would be over {MAX_RENDERED_BYTES} bytes (too large)"),
    )
}

fn positional(args: &[JinjaValue], index: usize) -> Option<&JinjaValue> {
    args.get(index).filter(|v| !v.is_kwargs())
}

fn keyword(args: &[JinjaValue], name: &str) -> Option<JinjaValue> {
    args.iter().find(|v| v.is_kwargs()).and_then(|kwargs| kwargs.get_attr(name).ok()).filter(|v| !v.is_undefined())
}

fn argument(args: &[JinjaValue], index: usize, name: &str) -> Option<JinjaValue> {
    positional(args, index).cloned().or_else(|| keyword(args, name))
}

/// Size checks before the builtins that can build more than their input: each refuses, before
/// allocating, a result over `MAX_RENDERED_BYTES` (or `MAX_BUILT_ITEMS` items).
fn guard_amplifying_filters(env: &mut Environment<'static>) {
    use minijinja::filters;
    type Check = fn(&[JinjaValue]) -> Result<(), minijinja::Error>;
    let guarded: [(&str, JinjaValue, Check); 10] = [
        ("escape", JinjaValue::from_function(filters::escape), check_escape),
        ("e", JinjaValue::from_function(filters::escape), check_escape),
        ("join", JinjaValue::from_function(filters::join), check_join),
        ("replace", JinjaValue::from_function(filters::replace), check_replace),
        ("indent", JinjaValue::from_function(filters::indent), check_indent),
        ("tojson", JinjaValue::from_function(filters::tojson), check_tojson),
        ("string", JinjaValue::from_function(filters::string), check_string),
        ("format", JinjaValue::from_function(filters::format), check_format),
        ("batch", JinjaValue::from_function(filters::batch), check_count),
        ("slice", JinjaValue::from_function(filters::slice), check_count),
    ];
    for (name, builtin, check) in guarded {
        env.add_filter(
            name,
            move |state: &mut minijinja::State,
                  minijinja::value::Rest(mut args): minijinja::value::Rest<JinjaValue>,
                  kwargs: minijinja::value::Kwargs| {
                if kwargs.args().next().is_some() {
                    args.push(JinjaValue::from(kwargs));
                }
                check(&args)?;
                builtin.call(state, &args)
            },
        );
    }
}

fn check_join(args: &[JinjaValue]) -> Result<(), minijinja::Error> {
    let joiner = argument(args, 1, "d").map(|j| j.to_string().len()).unwrap_or(0);
    let attribute = argument(args, 2, "attribute").and_then(|a| a.as_str().map(str::to_string));
    let Some(items) = positional(args, 0) else { return Ok(()) };
    let Ok(iter) = items.try_iter() else { return Ok(()) };
    let mut total = 0usize;
    for item in iter {
        let item = match &attribute {
            Some(path) => path.split('.').try_fold(item, |v, part| v.get_attr(part)).unwrap_or_default(),
            None => item,
        };
        let room = MAX_RENDERED_BYTES.saturating_sub(total);
        total += text_size(&item, room).ok_or_else(|| too_large("the joined text"))? + joiner;
        if total > MAX_RENDERED_BYTES {
            return Err(too_large("the joined text"));
        }
    }
    Ok(())
}

fn check_replace(args: &[JinjaValue]) -> Result<(), minijinja::Error> {
    let text = |i: usize| positional(args, i).map(|v| v.to_string()).unwrap_or_default();
    let (value, from, to) = (text(0), text(1), text(2));
    let matches = if from.is_empty() { value.chars().count() + 1 } else { value.matches(from.as_str()).count() };
    let size = value.len() + matches.saturating_mul(to.len().saturating_sub(from.len()));
    if size > MAX_RENDERED_BYTES { Err(too_large("the replaced text")) } else { Ok(()) }
}

fn check_indent(args: &[JinjaValue]) -> Result<(), minijinja::Error> {
    let value = positional(args, 0).map(|v| v.to_string()).unwrap_or_default();
    let width = argument(args, 1, "width").and_then(|w| w.as_usize()).unwrap_or(4);
    let size = value.len() + (value.matches('\n').count() + 1).saturating_mul(width);
    if size > MAX_RENDERED_BYTES { Err(too_large("the indented text")) } else { Ok(()) }
}

fn check_tojson(args: &[JinjaValue]) -> Result<(), minijinja::Error> {
    let indent = argument(args, 1, "indent").and_then(|i| i.as_usize()).unwrap_or(0);
    if indent > MAX_JSON_INDENT {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("a tojson indent over {MAX_JSON_INDENT} (too large)"),
        ));
    }
    // Measured as it will be printed, indentation included (it grows with the nesting).
    let value = positional(args, 0).cloned().unwrap_or_default();
    let mut out = Bounded::new(MAX_RENDERED_BYTES);
    let spaces = " ".repeat(indent);
    let measured = if indent == 0 {
        serde_json::to_writer(&mut out, &value)
    } else {
        let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
        serde::Serialize::serialize(&value, &mut serde_json::Serializer::with_formatter(&mut out, formatter))
    };
    measured.map_err(|_| too_large("the JSON text"))
}

/// HTML escaping: each of `& < > " ' /` becomes an entity of up to 6 bytes.
fn check_escape(args: &[JinjaValue]) -> Result<(), minijinja::Error> {
    let value = positional(args, 0).cloned().unwrap_or_default();
    let text = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
    let size = text.len() + text.bytes().filter(|b| b"&<>\"'/".contains(b)).count() * 5;
    if size > MAX_RENDERED_BYTES { Err(too_large("the escaped text")) } else { Ok(()) }
}

fn check_string(args: &[JinjaValue]) -> Result<(), minijinja::Error> {
    let value = positional(args, 0).cloned().unwrap_or_default();
    text_size(&value, MAX_RENDERED_BYTES).map(|_| ()).ok_or_else(|| too_large("the text"))
}

/// printf-style: the format, every argument's text, and every width or precision it asks for.
fn check_format(args: &[JinjaValue]) -> Result<(), minijinja::Error> {
    let format = positional(args, 0).map(|v| v.to_string()).unwrap_or_default();
    let mut size = format.len();
    let mut rest = format.as_str();
    while let Some(at) = rest.find('%') {
        rest = &rest[at + 1..];
        let spec: String = rest.chars().take_while(|c| c.is_ascii_digit() || "-+ #0.".contains(*c)).collect();
        size = spec
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<usize>().ok())
            .fold(size, usize::saturating_add);
    }
    for value in args.iter().skip(1) {
        size =
            size.saturating_add(text_size(value, MAX_RENDERED_BYTES).ok_or_else(|| too_large("the formatted text"))?);
    }
    if size > MAX_RENDERED_BYTES { Err(too_large("the formatted text")) } else { Ok(()) }
}

fn check_count(args: &[JinjaValue]) -> Result<(), minijinja::Error> {
    match positional(args, 1).and_then(|c| c.as_usize()) {
        Some(count) if count > MAX_BUILT_ITEMS => Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("a count over {MAX_BUILT_ITEMS} (too large)"),
        )),
        _ => Ok(()),
    }
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
    let message = format!("{}{detail}", e.kind());
    let code = match e.kind() {
        minijinja::ErrorKind::OutOfFuel => {
            return TemplateError::new(
                StepErrorCode::TemplateWorkLimit,
                format!("the template did more than its work budget ({TEMPLATE_FUEL} steps); loop over less"),
            );
        }
        minijinja::ErrorKind::InvalidOperation if message.contains("too large") => {
            StepErrorCode::TemplateOutputTooLarge
        }
        // Every writer rendering uses fails only past its size limit (the output, a capture).
        minijinja::ErrorKind::WriteFailure => StepErrorCode::TemplateOutputTooLarge,
        _ => StepErrorCode::TemplateRenderError,
    };
    TemplateError::new(code, message)
}

fn output_too_large() -> TemplateError {
    TemplateError::new(
        StepErrorCode::TemplateOutputTooLarge,
        format!("the rendered value is over {MAX_RENDERED_BYTES} bytes"),
    )
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
        // Measured before it is built: a value can share one string many times over. A value
        // passed along whole (`{{ nodes.fetch.output }}`) may be as large as a node output.
        json_size(&value, crate::model::values::MAX_NODE_OUTPUT_BYTES).ok_or_else(output_too_large)?;
        return serde_json::to_value(&value)
            .map_err(|e| TemplateError::new(StepErrorCode::TemplateRenderError, e.to_string()));
    }
    let template = env.template_from_str(source).map_err(render_error)?;
    // Written through a bounded buffer: rendering stops at the limit, not after it.
    let mut out = Bounded::new(MAX_RENDERED_BYTES);
    if let Err(e) = template.render_captured_to(context, &mut out) {
        if out.over {
            return Err(output_too_large());
        }
        return Err(failure(e, || template.undeclared_variables(true), scope));
    }
    String::from_utf8(out.written)
        .map(Value::String)
        .map_err(|_| TemplateError::new(StepErrorCode::TemplateRenderError, "the rendered text is not UTF-8"))
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

thread_local! {
    /// Set on a blocking-pool thread while it renders for `off_executor`: whether the node that
    /// asked has been abandoned (timed out, cancelled, cut off).
    static ABANDONED: std::cell::RefCell<Option<Arc<AtomicBool>>> = const { std::cell::RefCell::new(None) };
}

fn abandoned() -> bool {
    ABANDONED.with(|flag| flag.borrow().as_ref().is_some_and(|f| f.load(Ordering::Relaxed)))
}

/// Runs rendering (CPU work) on tokio's blocking pool, so the node's timeout, a cancel and the
/// invocation's cutoff can abandon it while the other executions of the batch keep running.
/// An abandoned render stops at its next string (`render_value` checks between strings; each
/// string is bounded by `TEMPLATE_FUEL`). A panic inside becomes a `TEMPLATE_RENDER_ERROR`.
pub async fn off_executor<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<TemplateError> + Send + 'static,
{
    struct AbandonOnDrop(Arc<AtomicBool>);
    impl Drop for AbandonOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let guard = AbandonOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = guard.0.clone();
    let joined = tokio::task::spawn_blocking(move || {
        ABANDONED.with(|f| *f.borrow_mut() = Some(flag));
        let result = work();
        ABANDONED.with(|f| *f.borrow_mut() = None);
        result
    })
    .await;
    drop(guard);
    joined.unwrap_or_else(|_| {
        Err(TemplateError::new(StepErrorCode::TemplateRenderError, "rendering stopped unexpectedly").into())
    })
}

/// Renders every string in a JSON value, keeping its shape. What all its strings render to
/// together is at most a node output's size (`values::MAX_NODE_OUTPUT_BYTES`), so a config of
/// many `{{ input }}` cannot multiply a large input.
pub fn render_value(value: &Value, scope: &Value) -> Result<Value, TemplateError> {
    let mut budget = crate::model::values::MAX_NODE_OUTPUT_BYTES;
    render_within(value, scope, &mut budget)
}

fn render_within(value: &Value, scope: &Value, budget: &mut usize) -> Result<Value, TemplateError> {
    match value {
        Value::String(_) if abandoned() => {
            Err(TemplateError::new(StepErrorCode::TemplateWorkLimit, "rendering was abandoned (the node timed out)"))
        }
        Value::String(s) => {
            let rendered = render_string(s, scope)?;
            let size = match &rendered {
                Value::String(text) => text.len(),
                other => crate::model::limits::json_size(other),
            };
            *budget = budget.checked_sub(size).ok_or_else(output_too_large)?;
            Ok(rendered)
        }
        Value::Array(items) => {
            items.iter().map(|v| render_within(v, scope, budget)).collect::<Result<_, _>>().map(Value::Array)
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_within(v, scope, budget)?)))
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

    fn code_of(source: &str, scope: &Value) -> StepErrorCode {
        render_string(source, scope).expect_err(source).code
    }

    #[test]
    fn a_template_that_loops_too_long_runs_out_of_work_budget() {
        let xs: Vec<u32> = (0..20_000).collect();
        let scope = json!({ "input": { "xs": xs } });
        let started = std::time::Instant::now();
        let nested = "{% for i in input.xs %}{% for j in input.xs %}{% endfor %}{% endfor %}";
        let err = render_string(nested, &scope).unwrap_err();
        assert_eq!(err.code, StepErrorCode::TemplateWorkLimit, "{}", err.message);
        assert!(err.message.contains("work budget"), "{}", err.message);
        // Other shapes of the same fault: a loop of a single expression, and a filter chain.
        assert_eq!(
            code_of(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% set k = j * 2 %}{% endfor %}{% endfor %}",
                &scope
            ),
            StepErrorCode::TemplateWorkLimit
        );
        assert_eq!(
            code_of(
                "{{ input.xs | map('string') | map('upper') | list | length }}{% for i in range(100000) %}{% for j in input.xs %}{% endfor %}{% endfor %}",
                &scope
            ),
            StepErrorCode::TemplateWorkLimit
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "fuel stops each: {:?}", started.elapsed());
        // Ordinary loops are far below it.
        assert_eq!(
            render_string("{% for x in input.xs %}{% endfor %}{{ input.xs | length }}", &scope).unwrap(),
            json!("20000")
        );
    }

    #[test]
    fn no_template_builds_a_value_over_the_cap() {
        let mut deep = json!(vec![1; 30_000]);
        for _ in 0..60 {
            deep = json!([deep]);
        }
        let scope = json!({ "input": { "big": "x".repeat(1000), "n": 1_000_000, "deep": deep } });
        for source in [
            "{{ 'ab' * 1000000 }}",
            "{{ 'ab' * input.n }}",
            "text: {{ 'ab' * 1000000 }}",
            "{% set a = 'x' * 1000000 %}{% set b = a ~ a %}ok",
            "{% set a = 'x' * 1000000 %}{{ (a + a) | length }}",
            "{% set a = 'x' * 1000000 %}{{ a ~ a ~ a }}",
            "{{ (['x' * 1000000] * 100000) | join }}",
            "{{ ([{'t': 'x' * 1000000}] * 100000) | join(attribute='t') | length }}",
            "{{ ([1] * 100000000) | length }}",
            "{% set s = [1] * 99999 %}{{ (s + s) | length }}",
            "{{ input.big | replace('x', 'y' * 100000) }}",
            "{{ 'x' | indent(100000000, true) }}",
            "{{ (['x' * 100000] * 1000) | tojson }}",
            "{{ [1] | tojson(indent=100000000) }}",
            "{{ (['x' * 100000] * 1000) | string | length }}",
            "{{ ('%100000s' * 20) | format(1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20) }}",
            "{{ [1] | batch(1000000000, 'x') | list | length }}",
            "{{ [1] | slice(1000000000) | list | length }}",
            "{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}",
            "{{ ['x' * 1000000] * 11 }}",
            // Captured output (set blocks, filter blocks) is bounded too.
            "{% set s = 'x' * 1000000 %}{% set a %}{% for i in range(100) %}{{ s }}{% endfor %}{% endset %}ok",
            "{% filter upper %}{% for i in range(3000) %}{{ 'x' * 1000 }}{% endfor %}{% endfilter %}",
            "{{ ('\"' * 500000) | e }}",
            "{{ input.deep | tojson(indent=16) }}",
        ] {
            let err = render_string(source, &scope).expect_err(source);
            assert_eq!(err.code, StepErrorCode::TemplateOutputTooLarge, "{source}: {}", err.message);
        }
        // Under the cap, the same filters work as documented.
        assert_eq!(render_string("{{ ['a', 'b'] | join('-') }}", &scope).unwrap(), json!("a-b"));
        assert_eq!(render_string("{{ 'a.b' | replace('.', '::') }}", &scope).unwrap(), json!("a::b"));
        assert_eq!(render_string("{{ {'k': [1]} | tojson }}", &scope).unwrap(), json!("{\"k\": [1]}"));
        assert_eq!(render_string("{{ '%s=%d' | format('n', 3) }}", &scope).unwrap(), json!("n=3"));
        assert_eq!(render_string("{{ [1,2,3] | batch(2) | list | length }}", &scope).unwrap(), json!(2));
    }

    #[test]
    fn default_and_is_defined_work_through_any_undefined_chain() {
        // The README's own guard, after a skipped branch.
        let scope = json!({ "input": {}, "nodes": { "yes": { "output": { "text": "hi" } } } });
        assert_eq!(render_string("{{ nodes.no.output.text | default(\"\") }}", &scope).unwrap(), json!(""));
        assert_eq!(
            render_string("{{ nodes.yes.output.text | default('') }}{{ nodes.no.output.text | default('') }}", &scope)
                .unwrap(),
            json!("hi")
        );
        assert_eq!(
            render_string("{% if nodes.no.output.text is defined %}a{% else %}b{% endif %}", &scope).unwrap(),
            json!("b")
        );
        assert_eq!(render_string("{{ input.a.b.c.d | default(7) }}", &scope).unwrap(), json!(7));
        assert_eq!(render_string("{{ input.a['b'][0] is undefined }}", &scope).unwrap(), json!(true));
        assert!(!evaluate_condition("nodes.no.output.ok | default(false)", &scope).unwrap());
        // Using the undefined value itself still fails, naming it.
        for source in [
            "{{ nodes.no.output.text }}",
            "say {{ nodes.no.output.text }}",
            "{% for x in nodes.no.output.items %}{{ x }}{% endfor %}",
            "{{ nodes.no.output.text | upper }}",
            "{{ 'a' ~ nodes.no.output.text }}",
        ] {
            let err = render_string(source, &scope).unwrap_err();
            assert_eq!(err.code, StepErrorCode::TemplateUndefinedVariable, "{source}: {}", err.message);
            assert!(err.message.contains("nodes.no"), "{source}: {}", err.message);
        }
        assert!(evaluate_condition("nodes.no.output.ok", &scope).is_err());
    }

    #[test]
    fn a_config_cannot_multiply_a_large_value() {
        let scope = json!({ "input": { "big": "y".repeat(100_000) } });
        let config = json!({ "source": vec!["{{ input.big }}"; 300] });
        assert_eq!(render_value(&config, &scope).unwrap_err().code, StepErrorCode::TemplateOutputTooLarge);
        let small = json!({ "source": vec!["{{ input.big }}"; 50] });
        assert_eq!(render_value(&small, &scope).unwrap()["source"].as_array().map(Vec::len), Some(50));
    }
}
