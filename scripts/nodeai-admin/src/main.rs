//! Operator commands (run through `scripts/admin`):
//!   create-table                          create the table if missing (local stack)
//!   create-usage-plans                    create the tier usage plans if missing (local stack)
//!   create-tenant --name N [--tier T] [--api-key K]
//!                                         a tenant, its API Gateway key in the tier's usage plan,
//!                                         and its first NodeAI key, printed once
//!   set-tier --tenant ID --tier T         move a tenant to another tier's usage plan
//!   create-queue --name N                 create the execution queue if missing; prints its URL (local stack)
//!   create-bucket --name N                create the values bucket if missing (local stack)
//! Reads TABLE_NAME, USAGE_PLAN_PREFIX (default nodeai-<STAGE or local>) and the usual AWS
//! variables (AWS_ENDPOINT_URL for the emulator).

use nodeai::config::{table_name_from_env, usage_plan_prefix_from_env};
use nodeai::model::TIERS;
use nodeai::store::dynamo::{ChangeStream, DynamoStore, create_table};
use nodeai_admin::provisioning::{ApiGatewayUsagePlans, UsagePlans, create_tenant, set_tier};
use std::process::ExitCode;

const USAGE: &str = "usage: admin create-table | create-usage-plans | create-queue --name NAME | create-bucket --name NAME | create-tenant --name NAME [--tier free|pro|enterprise] [--api-key nk_...] | set-tier --tenant ID --tier TIER";

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("{message}\n{USAGE}");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (table, prefix) = match (table_name_from_env(), usage_plan_prefix_from_env()) {
        (Ok(table), Ok(prefix)) => (table, prefix),
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let sdk = aws_config::load_from_env().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let plans = ApiGatewayUsagePlans::new(aws_sdk_apigateway::Client::new(&sdk));
    let tier = flag(&args, "--tier").unwrap_or_else(|| "free".into());
    if !TIERS.contains(&tier.as_str()) {
        return usage_error(&format!("--tier must be one of {}", TIERS.join(", ")));
    }
    let result = match args.first().map(String::as_str) {
        Some("create-table") => {
            create_table(&dynamo, &table, ChangeStream::On).await.map(|()| println!("table {table} is ready"))
        }
        Some("create-usage-plans") => plans
            .ensure_plans(&prefix)
            .await
            .map(|()| println!("usage plans {prefix}-{{{}}} are ready", TIERS.join(","))),
        Some("create-tenant") => {
            let Some(name) = flag(&args, "--name").filter(|n| !n.trim().is_empty() && n.len() <= 200) else {
                return usage_error("--name is required (1-200 characters)");
            };
            let store = DynamoStore::new(dynamo, table);
            create_tenant(&store, &plans, &prefix, &name, &tier, flag(&args, "--api-key").as_deref()).await.map(
                |(tenant, key)| {
                    println!("tenant_id={}", tenant.tenant_id);
                    println!("tier={}", tenant.tier);
                    println!("api_key={key}");
                    eprintln!("Store this key now: only its hash is kept and it cannot be shown again.");
                },
            )
        }
        Some("create-queue") => {
            let Some(name) = flag(&args, "--name") else { return usage_error("--name is required") };
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            match sqs.create_queue().queue_name(&name).send().await {
                Ok(out) => {
                    println!("{}", out.queue_url.unwrap_or_default());
                    Ok(())
                }
                Err(e) => {
                    Err(nodeai::error::StoreError::Internal(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))
                }
            }
        }
        Some("create-bucket") => {
            let Some(name) = flag(&args, "--name") else { return usage_error("--name is required") };
            let s3 = nodeai::store::s3::client(&sdk);
            nodeai::store::s3::create_bucket(&s3, &name).await.map(|()| println!("bucket {name} is ready"))
        }
        Some("set-tier") => {
            let Some(tenant_id) = flag(&args, "--tenant") else { return usage_error("--tenant is required") };
            if flag(&args, "--tier").is_none() {
                return usage_error("--tier is required");
            }
            let store = DynamoStore::new(dynamo, table);
            set_tier(&store, &plans, &prefix, &tenant_id, &tier)
                .await
                .map(|tenant| println!("tenant {} is now {}", tenant.tenant_id, tenant.tier))
        }
        _ => return usage_error("unknown command"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("failed: {err}");
            ExitCode::FAILURE
        }
    }
}
