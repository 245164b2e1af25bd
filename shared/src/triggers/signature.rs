//! Webhook signature schemes: each verifies the raw body bytes, before any parsing, with
//! HMAC-SHA256 and a constant-time comparison (`Mac::verify_slice`).
//!
//! Sources: GitHub "Validating webhook deliveries" (`X-Hub-Signature-256: sha256=<hex>` over the
//! body, no timestamp); Stripe "Verify webhook signatures manually" (`Stripe-Signature:
//! t=<unix>,v1=<hex>[,v1=...]` over `"<t>.<body>"`, default tolerance 300 s, a timestamp older
//! than that is refused); Slack "Verifying requests from Slack" (`X-Slack-Signature: v0=<hex>`
//! over `"v0:<X-Slack-Request-Timestamp>:<body>"`, refused when more than 5 minutes from now).
//! NodeAI's own scheme is Stripe's shape under the header `NodeAI-Signature`, refused more than
//! 5 minutes either way.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How far a signed timestamp may be from now, seconds (NodeAI, Stripe, Slack).
pub const TOLERANCE_SECONDS: i64 = 300;

/// The verification a webhook trigger asks of each delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureScheme {
    /// `NodeAI-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
    Nodeai,
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
    Github,
    /// `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
    Stripe,
    /// `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<raw body>">` with
    /// `X-Slack-Request-Timestamp`.
    Slack,
    /// No verification: only when a trigger asks for it by name; listed as unsigned.
    None,
}

impl SignatureScheme {
    pub const ALL: &'static [&'static str] = &["nodeai", "github", "stripe", "slack", "none"];

    pub fn parse(text: &str) -> Option<SignatureScheme> {
        serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignatureScheme::Nodeai => "nodeai",
            SignatureScheme::Github => "github",
            SignatureScheme::Stripe => "stripe",
            SignatureScheme::Slack => "slack",
            SignatureScheme::None => "none",
        }
    }

    /// The headers that carry a signature: never copied into an execution's input.
    pub const SIGNATURE_HEADERS: &'static [&'static str] =
        &["nodeai-signature", "x-hub-signature", "x-hub-signature-256", "stripe-signature", "x-slack-signature"];

    /// Whether the provider's secret must be given (Stripe and Slack issue their own);
    /// NodeAI generates one for the others.
    pub fn needs_given_secret(self) -> bool {
        matches!(self, SignatureScheme::Stripe | SignatureScheme::Slack)
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("the signature does not match the body")]
    Mismatch,
    /// The signed timestamp is `age` seconds old (negative: in the future).
    #[error("the signed timestamp is {age} seconds from now; the tolerance is {TOLERANCE_SECONDS}")]
    Stale { age: i64 },
}

/// A verified delivery: what identifies it for replays when the provider sends no delivery id
/// (the signed timestamp and signature: a replay within the tolerance carries the same ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub signature_id: Option<String>,
}

/// Verifies one delivery. `header` reads a request header by lower-case name; `secrets` are
/// the trigger's live secrets (the current one, and the previous one during a rotation's grace
/// period); `now` is unix seconds.
pub fn verify(
    scheme: SignatureScheme,
    header: &(dyn Fn(&str) -> Option<String> + Sync),
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<Verified, SignatureError> {
    match scheme {
        SignatureScheme::None => Ok(Verified { signature_id: None }),
        SignatureScheme::Github => {
            const HEADER: &str = "X-Hub-Signature-256";
            let value = header("x-hub-signature-256").ok_or(SignatureError::Missing(HEADER))?;
            let hex_sig = value.trim().strip_prefix("sha256=").ok_or(SignatureError::Malformed(HEADER))?;
            let given = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed(HEADER))?;
            let matched = matches_any(secrets, &[body], &[given])?;
            // No timestamp: the body's signature names the delivery for replays.
            Ok(Verified { signature_id: Some(hex::encode(matched)) })
        }
        SignatureScheme::Nodeai | SignatureScheme::Stripe => {
            let (name, header_name) = if scheme == SignatureScheme::Nodeai {
                ("nodeai-signature", "NodeAI-Signature")
            } else {
                ("stripe-signature", "Stripe-Signature")
            };
            let value = header(name).ok_or(SignatureError::Missing(header_name))?;
            let (t, signatures) = parse_t_v1(&value).ok_or(SignatureError::Malformed(header_name))?;
            // Stripe's libraries refuse only an old timestamp; NodeAI refuses either way. A
            // timestamp too far off to subtract is stale.
            let age = now.checked_sub(t).unwrap_or(i64::MIN);
            if age > TOLERANCE_SECONDS
                || ((scheme == SignatureScheme::Nodeai || age == i64::MIN) && age < -TOLERANCE_SECONDS)
            {
                return Err(SignatureError::Stale { age });
            }
            let prefix = format!("{t}.");
            let matched = matches_any(secrets, &[prefix.as_bytes(), body], &signatures)?;
            Ok(Verified { signature_id: Some(format!("{t}.{}", hex::encode(matched))) })
        }
        SignatureScheme::Slack => {
            const HEADER: &str = "X-Slack-Signature";
            const TIMESTAMP: &str = "X-Slack-Request-Timestamp";
            let value = header("x-slack-signature").ok_or(SignatureError::Missing(HEADER))?;
            let ts = header("x-slack-request-timestamp").ok_or(SignatureError::Missing(TIMESTAMP))?;
            let t: i64 = ts.trim().parse().map_err(|_| SignatureError::Malformed(TIMESTAMP))?;
            let hex_sig = value.trim().strip_prefix("v0=").ok_or(SignatureError::Malformed(HEADER))?;
            let given = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed(HEADER))?;
            let age = now.checked_sub(t).unwrap_or(i64::MIN);
            if age.checked_abs().is_none_or(|abs| abs > TOLERANCE_SECONDS) {
                return Err(SignatureError::Stale { age });
            }
            let prefix = format!("v0:{t}:");
            let matched = matches_any(secrets, &[prefix.as_bytes(), body], &[given])?;
            Ok(Verified { signature_id: Some(format!("{t}.{}", hex::encode(matched))) })
        }
    }
}

/// `t=<digits>,v1=<hex>[,v1=<hex>...]` (other schemes' entries, such as Stripe's `v0`, ignored).
fn parse_t_v1(value: &str) -> Option<(i64, Vec<Vec<u8>>)> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in value.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "t" => t = Some(val.parse::<i64>().ok()?),
            "v1" => signatures.push(hex::decode(val).ok()?),
            _ => {}
        }
    }
    (!signatures.is_empty()).then_some((t?, signatures))
}

/// The first given signature that one of the secrets produces over `parts`, compared in
/// constant time.
fn matches_any(secrets: &[String], parts: &[&[u8]], given: &[Vec<u8>]) -> Result<Vec<u8>, SignatureError> {
    for secret in secrets {
        for signature in given {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { continue };
            for part in parts {
                mac.update(part);
            }
            if mac.verify_slice(signature).is_ok() {
                return Ok(signature.clone());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

/// The hex HMAC-SHA256 of `message` under `secret`: what a sender computes (tests, the README's
/// `openssl dgst -sha256 -hmac` line).
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NOW: i64 = 1_800_000_000;

    fn check(scheme: SignatureScheme, headers: &[(&str, String)], body: &[u8]) -> Result<Verified, SignatureError> {
        let map: HashMap<String, String> = headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        verify(scheme, &|name| map.get(name).cloned(), body, &["It's a Secret to Everybody".to_string()], NOW)
    }

    #[test]
    fn github_matches_its_documented_example() {
        // docs.github.com, "Validating webhook deliveries": this secret and payload give this
        // signature.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".to_string();
        assert!(check(SignatureScheme::Github, &[("x-hub-signature-256", header.clone())], b"Hello, World!").is_ok());
        assert_eq!(
            check(SignatureScheme::Github, &[("x-hub-signature-256", header)], b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(SignatureScheme::Github, &[], b"Hello, World!"),
            Err(SignatureError::Missing("X-Hub-Signature-256"))
        );
    }

    #[test]
    fn slack_matches_its_documented_example() {
        // api.slack.com, "Verifying requests from Slack": the documented secret, timestamp,
        // body and signature.
        let secret = "8f742231b10e8888abcd99yyyzzz85a5".to_string();
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let headers: HashMap<&str, String> = HashMap::from([
            ("x-slack-request-timestamp", "1531420618".to_string()),
            ("x-slack-signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503".to_string()),
        ]);
        let header = |name: &str| headers.get(name).cloned();
        assert!(verify(SignatureScheme::Slack, &header, body, std::slice::from_ref(&secret), 1531420618 + 10).is_ok());
        assert!(matches!(
            verify(SignatureScheme::Slack, &header, body, std::slice::from_ref(&secret), 1531420618 + 301),
            Err(SignatureError::Stale { age: 301 })
        ));
    }

    fn t_v1(secret: &str, t: i64, body: &[u8]) -> String {
        let mut message = format!("{t}.").into_bytes();
        message.extend_from_slice(body);
        format!("t={t},v1={}", hmac_hex(secret, &message))
    }

    #[test]
    fn nodeai_and_stripe_check_the_signature_and_the_timestamp() {
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
        let secret = "It's a Secret to Everybody";
        for (scheme, header) in
            [(SignatureScheme::Nodeai, "nodeai-signature"), (SignatureScheme::Stripe, "stripe-signature")]
        {
            let good = t_v1(secret, NOW - 10, body);
            let verified = check(scheme, &[(header, good.clone())], body).unwrap();
            assert!(verified.signature_id.unwrap().starts_with(&format!("{}.", NOW - 10)));
            // One byte changed.
            let mut changed = body.to_vec();
            changed[3] ^= 1;
            assert_eq!(check(scheme, &[(header, good.clone())], &changed), Err(SignatureError::Mismatch));
            // Wrong secret, missing, malformed.
            assert_eq!(check(scheme, &[(header, t_v1("other", NOW, body))], body), Err(SignatureError::Mismatch));
            assert!(matches!(check(scheme, &[], body), Err(SignatureError::Missing(_))));
            assert!(matches!(check(scheme, &[(header, "t=x,v1=zz".into())], body), Err(SignatureError::Malformed(_))));
            // A stale timestamp, though correctly signed.
            let stale = t_v1(secret, NOW - 301, body);
            assert_eq!(check(scheme, &[(header, stale)], body), Err(SignatureError::Stale { age: 301 }));
            // Several v1 entries (a sender signing with two secrets during a rotation).
            let two = format!("{},v1={}", t_v1("old", NOW, body), t_v1(secret, NOW, body).split("v1=").nth(1).unwrap());
            assert!(check(scheme, &[(header, two)], body).is_ok());
        }
        // A future timestamp: NodeAI refuses it, Stripe's rule only looks at age.
        let future = t_v1(secret, NOW + 400, body);
        assert_eq!(
            check(SignatureScheme::Nodeai, &[("nodeai-signature", future.clone())], body),
            Err(SignatureError::Stale { age: -400 })
        );
        assert!(check(SignatureScheme::Stripe, &[("stripe-signature", future)], body).is_ok());
        // Timestamps chosen to overflow are stale, never a panic.
        for t in [i64::MIN, i64::MAX, -1] {
            for (scheme, header) in
                [(SignatureScheme::Nodeai, "nodeai-signature"), (SignatureScheme::Stripe, "stripe-signature")]
            {
                if scheme == SignatureScheme::Stripe && t == i64::MAX {
                    continue; // Stripe's rule looks at age only: a future time is not stale.
                }
                let result = check(scheme, &[(header, t_v1(secret, t, body))], body);
                assert!(matches!(result, Err(SignatureError::Stale { .. })), "{scheme:?} t={t}: {result:?}");
            }
            let slack = [("x-slack-signature", "v0=00".to_string()), ("x-slack-request-timestamp", t.to_string())];
            assert!(matches!(check(SignatureScheme::Slack, &slack, body), Err(SignatureError::Stale { .. })));
        }
    }

    #[test]
    fn a_previous_secret_still_verifies_during_its_grace_period() {
        let body = b"{}";
        let header = HashMap::from([("nodeai-signature".to_string(), t_v1("old-secret", NOW, body))]);
        let read = |name: &str| header.get(name).cloned();
        let both = ["new-secret".to_string(), "old-secret".to_string()];
        assert!(verify(SignatureScheme::Nodeai, &read, body, &both, NOW).is_ok());
        assert_eq!(
            verify(SignatureScheme::Nodeai, &read, body, &both[..1], NOW),
            Err(SignatureError::Mismatch),
            "once the grace period is over"
        );
    }

    #[test]
    fn schemes_parse_by_name_only() {
        for name in SignatureScheme::ALL {
            assert_eq!(SignatureScheme::parse(name).unwrap().as_str(), *name);
        }
        assert_eq!(SignatureScheme::parse("NodeAI"), None);
        assert_eq!(SignatureScheme::parse(""), None);
    }
}
