//! S3 adapter for `ValueStore`: one bucket, server-side encryption on every object (SSE-S3,
//! also the bucket's default in template.yaml), expiry by the bucket's lifecycle rule.

use super::ValueStore;
use crate::error::StoreError;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use std::time::Duration;

#[derive(Clone)]
pub struct S3ValueStore {
    client: Client,
    bucket: String,
}

impl S3ValueStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3ValueStore { client, bucket: bucket.into() }
    }
}

fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    super::sdk_error::classify_sdk_error(err, &["SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"])
}

/// An S3 client for the value store: path-style addressing, so the local emulator (one host
/// name) serves every bucket; AWS accepts it too.
pub fn client(sdk_config: &aws_config::SdkConfig) -> Client {
    Client::from_conf(aws_sdk_s3::config::Builder::from(sdk_config).force_path_style(true).build())
}

/// Creates the values bucket if missing (the local stack and tests; template.yaml creates it
/// on AWS, with its encryption, public access block, TLS-only policy and lifecycle expiry).
pub async fn create_bucket(client: &Client, bucket: &str) -> Result<(), StoreError> {
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => Ok(()),
        Err(e) => Err(classify(e)),
    }
}

#[async_trait]
impl ValueStore for S3ValueStore {
    async fn put_value(&self, key: &str, json: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(json))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => {
                let bytes =
                    object.body.collect().await.map_err(|e| StoreError::Unavailable(format!("reading {key}: {e}")))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.code() == Some("NoSuchKey") => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    async fn value_url(&self, key: &str, expires_in: Duration) -> Result<String, StoreError> {
        let presigning = PresigningConfig::expires_in(expires_in).map_err(|e| StoreError::Internal(e.to_string()))?;
        let request =
            self.client.get_object().bucket(&self.bucket).key(key).presigned(presigning).await.map_err(classify)?;
        Ok(request.uri().to_string())
    }
}
