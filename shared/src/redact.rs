//! Keeping secrets out of what NodeAI stores and logs: step inputs, step outputs (response
//! headers), error messages. One rule for what looks like a secret, used everywhere.
//!
//! A **sensitive name** is a header, query parameter or field name whose value is usually a
//! credential: any of its words (split on `-`, `_`, `.`) is one of `SENSITIVE_WORDS`, or it
//! contains one of `SENSITIVE_PARTS`. A **secret-looking value** in free text is the value after
//! a sensitive name (`name=value`, `name: value`, `"name": "value"`), the token after `Bearer` or
//! `Basic`, a URL's password, or a token with a well-known key prefix (`sk-`, `sk_live_`, `ghp_`,
//! `xoxb-`, `AKIA`…).

use crate::model::limits::bounded_message;

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Whole words of a name that mark it as sensitive (`x-api-key` has the word `key`).
const SENSITIVE_WORDS: &[&str] = &[
    "auth",
    "authorization",
    "bearer",
    "cookie",
    "credential",
    "jwt",
    "key",
    "otp",
    "passphrase",
    "passwd",
    "password",
    "pwd",
    "secret",
    "session",
    "sessionid",
    "sig",
    "signature",
    "token",
];

/// Parts of a name that mark it as sensitive wherever they appear (`apikey`, `accesstoken`).
const SENSITIVE_PARTS: &[&str] =
    &["apikey", "api_key", "accesstoken", "authtoken", "secret", "password", "passwd", "cookie"];

/// Prefixes of well-known API key formats (OpenAI, Anthropic, Stripe, GitHub, Slack, AWS,
/// Google), redacted wherever they appear in text.
const KEY_PREFIXES: &[&str] = &[
    "sk-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "pk_live_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "AKIA",
    "ASIA",
    "AIza",
];

/// Whether a header, query parameter or field name usually carries a secret.
pub fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE_PARTS.iter().any(|part| lower.contains(part))
        || lower.split(['-', '_', '.', ' ']).any(|word| SENSITIVE_WORDS.contains(&word))
}

/// A URL with its password and the values of its sensitive query parameters replaced; text
/// that is not a URL is redacted as text.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else { return redact_text(url) };
    let mut changed = false;
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some(REDACTED));
        changed = true;
    }
    if parsed.query_pairs().any(|(name, _)| is_sensitive_name(&name)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_sensitive_name(&name) { REDACTED.to_string() } else { value.into_owned() };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed { parsed.to_string() } else { redact_text(url) }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.~+/=%".contains(c)
}

/// Whether `bare` is a credential by its format alone: AWS access key ids (exactly 20
/// upper-case letters and digits after `AKIA`/`ASIA`), or another known prefix followed by at
/// least 8 more characters.
fn has_key_format(bare: &str) -> bool {
    if bare.starts_with("AKIA") || bare.starts_with("ASIA") {
        return bare.len() == 20 && bare.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    }
    KEY_PREFIXES.iter().any(|p| bare.starts_with(p) && bare.len() >= p.len() + 8)
}

/// Free text with every secret-looking value replaced (see the module's rule). A value follows
/// a sensitive name only across `:` or `=` (`Authorization: Bearer x`, `"api_key": "x"`,
/// `token=x`), so prose that merely mentions tokens or a session keeps its words.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // The last word was a sensitive name (waiting for `:` or `=`), or an auth scheme.
    let (mut after_name, mut after_scheme) = (false, false);
    // The next word is a secret.
    let mut secret_follows = false;
    while !rest.is_empty() {
        let word_end = rest.find(|c: char| !(is_token_char(c) || c == '"' || c == '\'')).unwrap_or(rest.len());
        if word_end == 0 {
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
            match c {
                ':' | '=' if after_name => secret_follows = true,
                ' ' if after_scheme => secret_follows = true,
                ' ' | '"' | '\'' | ':' | '=' => {}
                _ => (after_name, after_scheme, secret_follows) = (false, false, false),
            }
            continue;
        }
        let word = &rest[..word_end];
        rest = &rest[word_end..];
        let bare = word.trim_matches(|c| c == '"' || c == '\'');
        let lower = bare.to_ascii_lowercase();
        let is_scheme = ["bearer", "basic", "token", "digest"].contains(&lower.as_str());
        if secret_follows && is_scheme {
            // `Authorization: Bearer <token>`: the scheme stays, the token after it goes.
            out.push_str(word);
            (after_name, after_scheme, secret_follows) = (false, true, false);
            continue;
        }
        if secret_follows && !bare.is_empty() {
            out.push_str(&word.replace(bare, REDACTED));
            (after_name, after_scheme, secret_follows) = (false, false, false);
            continue;
        }
        (after_name, after_scheme, secret_follows) = (false, false, false);
        if let Some((name, value)) = bare.split_once('=')
            && !value.is_empty()
            && is_sensitive_name(name)
        {
            let eq = word.find('=').expect("the word has the '=' its bare part has");
            out.push_str(&word[..=eq]);
            out.push_str(REDACTED);
            if word.ends_with(['"', '\'']) && word.len() > bare.len() {
                out.push_str(&word[word.len() - 1..]);
            }
        } else if has_key_format(bare) {
            out.push_str(&word.replace(bare, REDACTED));
        } else {
            out.push_str(word);
            after_name = !bare.contains('=') && is_sensitive_name(bare);
            after_scheme = lower == "bearer" || lower == "basic";
        }
    }
    out
}

/// An error message as a step or an execution keeps it: redacted, then bounded to about 1 KB.
pub fn error_message(message: &str) -> String {
    bounded_message(&redact_text(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_usually_carry_secrets() {
        for name in [
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "Set-Cookie",
            "X-API-Key",
            "api-key",
            "apikey",
            "api_key",
            "key",
            "x-goog-api-key",
            "X-Auth-Token",
            "x-access-token",
            "access_token",
            "refresh_token",
            "id_token",
            "client_secret",
            "password",
            "db.passwd",
            "signature",
            "X-Amz-Signature",
            "X-Amz-Security-Token",
            "sessionid",
            "sig",
            "private_key",
            "subscription-key",
            "Ocp-Apim-Subscription-Key",
        ] {
            assert!(is_sensitive_name(name), "{name}");
        }
        for name in [
            "Content-Type",
            "Accept",
            "page",
            "author",
            "monkey",
            "keyword",
            "amount",
            "user",
            "sort",
            "x-ratelimit-remaining-tokens",
            "access-control-allow-credentials",
            "max_tokens",
        ] {
            assert!(!is_sensitive_name(name), "{name}");
        }
    }

    #[test]
    fn urls_lose_their_secrets_and_keep_the_rest() {
        let shown = redact_url("http://127.0.0.1:8080/v1/charge?api_key=sk_live_XXXX&amount=1");
        assert!(!shown.contains("sk_live_XXXX") && shown.contains("amount=1"), "{shown}");
        let shown = redact_url("https://user:hunter22@example.com/x?token=abc&page=2");
        assert!(!shown.contains("hunter22") && !shown.contains("abc") && shown.contains("page=2"), "{shown}");
        // Not a URL (the port 99999): redacted as text.
        let shown = redact_url("http://127.0.0.1:99999/v1/charge?api_key=sk_live_XXXX&amount=1");
        assert!(!shown.contains("sk_live_XXXX") && shown.contains("amount=1"), "{shown}");
    }

    #[test]
    fn text_loses_secret_looking_values() {
        for (text, secret) in [
            ("failed: api_key=sk_live_XXXX&amount=1", "sk_live_XXXX"),
            ("Authorization: Bearer tk-abcdef123456", "tk-abcdef123456"),
            ("header authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
            ("{\"client_secret\": \"s3cr3t-value\"}", "s3cr3t-value"),
            ("token expired for sk-proj-abcdefghijklmnop", "sk-proj-abcdefghijklmnop"),
            ("key AKIAIOSFODNN7EXAMPLE was refused", "AKIAIOSFODNN7EXAMPLE"),
            ("password='correct horse'", "correct"),
            ("x-api-key: qk-123456789", "qk-123456789"),
            ("password=pass", "=pass"),
            ("\"token\": \"abc123def\"", "abc123def"),
        ] {
            let shown = redact_text(text);
            assert!(!shown.contains(secret), "{text} -> {shown}");
            assert!(shown.contains(REDACTED), "{text} -> {shown}");
        }
        for plain in [
            "the request to 'api.example.com' failed",
            "amount=1&page=2",
            "status 404: not found",
            "the prompt is 8192 tokens. However, you asked for more",
            "Session expired, sign in again",
            "shipping to ASIA-PACIFIC regions",
            "'nodes.x.output.token' is not defined at this point of the run",
        ] {
            assert_eq!(redact_text(plain), plain);
        }
    }

    #[test]
    fn error_messages_are_redacted_and_bounded() {
        let message = format!("'{}' is not a valid URL?api_key=sk_live_XXXX", "x".repeat(230_000));
        let kept = error_message(&message);
        assert!(kept.len() <= crate::model::limits::MAX_ERROR_MESSAGE_BYTES, "{}", kept.len());
        assert!(!error_message("bad: api_key=sk_live_XXXX").contains("sk_live_XXXX"));
    }
}
