//! The table itself (local stack and tests; template.yaml owns it in AWS).

use super::*;

/// What the sweep index keeps of an execution besides its keys (template.yaml lists the same).
pub const SWEEP_PROJECTION: &[&str] =
    &["execution_id", "status", "deadline_at", "sweep_count", "request_id", "lease_until"];

/// Whether a table created locally has a change stream: the local stack's does (the usage
/// counters read it), in-process tests' do not (the emulator keeps every stream record in
/// memory, which slows it down over a whole test run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeStream {
    On,
    Off,
}

/// Creates the table (local stack and tests; in AWS, template.yaml owns it). Idempotent.
pub async fn create_table(client: &Client, table: &str, stream: ChangeStream) -> Result<(), StoreError> {
    let attribute =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let key_element =
        |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let internal = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
    // The usage counters read executions' final writes from the change stream.
    let stream = match stream {
        ChangeStream::Off => None,
        ChangeStream::On => Some(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                .build()
                .map_err(internal)?,
        ),
    };
    let result = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_stream_specification(stream)
        .attribute_definitions(attribute("pk").map_err(internal)?)
        .attribute_definitions(attribute("sk").map_err(internal)?)
        .attribute_definitions(attribute("gsi1pk").map_err(internal)?)
        .attribute_definitions(attribute("gsi1sk").map_err(internal)?)
        .attribute_definitions(attribute("sweep_pk").map_err(internal)?)
        .attribute_definitions(attribute("sweep_at").map_err(internal)?)
        .key_schema(key_element("pk", KeyType::Hash).map_err(internal)?)
        .key_schema(key_element("sk", KeyType::Range).map_err(internal)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("gsi1")
                .key_schema(key_element("gsi1pk", KeyType::Hash).map_err(internal)?)
                .key_schema(key_element("gsi1sk", KeyType::Range).map_err(internal)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(internal)?,
        )
        .global_secondary_indexes(
            // Sparse: only unfinished executions carry `sweep_pk`, so the sweeper reads just them.
            GlobalSecondaryIndex::builder()
                .index_name("sweep")
                .key_schema(key_element("sweep_pk", KeyType::Hash).map_err(internal)?)
                .key_schema(key_element("sweep_at", KeyType::Range).map_err(internal)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .set_non_key_attributes(Some(SWEEP_PROJECTION.iter().map(|a| a.to_string()).collect()))
                        .build(),
                )
                .build()
                .map_err(internal)?,
        )
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ResourceInUseException") => Ok(()),
        Err(e) => Err(classify(e)),
    }
}
