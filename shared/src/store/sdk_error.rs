//! AWS SDK errors as `StoreError`s, one rule for every adapter: the service's throttling and
//! server-side codes, and a request that never got an answer (dispatch, timeout, unreadable
//! response), are `Unavailable` (worth retrying); anything else is `Internal`. The detail keeps
//! the SDK's context for the logs; the API never shows it.

// The smithy runtime's error types: every aws-sdk crate re-exports these same ones.
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::StoreError;

/// `err` as a `StoreError`; `transient_codes` are the service's error codes worth a retry.
pub(crate) fn classify_sdk_error<E, R>(err: SdkError<E, R>, transient_codes: &[&str]) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = DisplayErrorContext(&err).to_string();
    match err.code() {
        Some(code) if transient_codes.contains(&code) => StoreError::Unavailable(detail),
        Some(_) => StoreError::Internal(detail),
        None => match err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
                StoreError::Unavailable(detail)
            }
            _ => StoreError::Internal(detail),
        },
    }
}
