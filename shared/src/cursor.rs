//! Opaque, tamper-checked list cursors: `base64url(resume point) . base64url(HMAC)`. The MAC
//! covers the listing's scope (tenant, collection, filter), so a cursor cannot be altered or
//! replayed against another tenant's or another filter's listing.

use crate::error::{ApiError, ErrorCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAX_CURSOR_LEN: usize = 512;

fn mac(key: &[u8], scope: &str, after: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(scope.as_bytes());
    mac.update(b"\n");
    mac.update(after.as_bytes());
    mac
}

pub fn encode(key: &[u8], scope: &str, after: &str) -> String {
    let tag = mac(key, scope, after).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(after), URL_SAFE_NO_PAD.encode(tag))
}

pub fn decode(key: &[u8], scope: &str, token: &str) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::new(ErrorCode::InvalidCursor, "next_token is not valid for this listing")
            .suggest("Pass next_token exactly as the previous page returned it, with the same filters.")
    };
    if token.len() > MAX_CURSOR_LEN {
        return Err(invalid());
    }
    let (payload, tag) = token.split_once('.').ok_or_else(invalid)?;
    let after = URL_SAFE_NO_PAD.decode(payload).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(invalid)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
    // verify_slice compares in constant time.
    mac(key, scope, &after).verify_slice(&tag).map_err(|_| invalid())?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trips_and_rejects_tampering_and_other_scopes() {
        let token = encode(KEY, "workflows|t1|", "01J000");
        assert_eq!(decode(KEY, "workflows|t1|", &token).unwrap(), "01J000");
        assert_eq!(decode(KEY, "workflows|t2|", &token).unwrap_err().code, ErrorCode::InvalidCursor);
        assert!(decode(b"another key of thirty-two bytes!", "workflows|t1|", &token).is_err());
        let forged = format!("{}.{}", URL_SAFE_NO_PAD.encode("01J999"), token.split_once('.').unwrap().1);
        assert!(decode(KEY, "workflows|t1|", &forged).is_err());
        for junk in ["", ".", "abc", "a.b.c", "!!!.???", &"x".repeat(600)] {
            assert!(decode(KEY, "workflows|t1|", junk).is_err(), "{junk}");
        }
    }
}
