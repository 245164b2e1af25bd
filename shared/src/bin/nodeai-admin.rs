//! Operator commands (run through `scripts/admin`):
//!   create-table                                   create the table if missing (local stack)
//!   create-tenant --name N [--tier T] [--api-key K] create a tenant; prints its first key once
//! Reads TABLE_NAME and the usual AWS variables (AWS_ENDPOINT_URL for the emulator).

use nodeai::auth::provision_tenant;
use nodeai::config::table_name_from_env;
use nodeai::store::dynamo::{DynamoStore, create_table};
use std::process::ExitCode;

const USAGE: &str =
    "usage: admin create-table | admin create-tenant --name NAME [--tier free|pro|enterprise] [--api-key nk_...]";
const TIERS: &[&str] = &["free", "pro", "enterprise"];

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let table = match table_name_from_env() {
        Ok(table) => table,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let sdk = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    match args.first().map(String::as_str) {
        Some("create-table") => match create_table(&client, &table).await {
            Ok(()) => {
                println!("table {table} is ready");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("could not create table {table}: {err}");
                ExitCode::FAILURE
            }
        },
        Some("create-tenant") => {
            let Some(name) = flag(&args, "--name").filter(|n| !n.trim().is_empty() && n.len() <= 200) else {
                eprintln!("--name is required (1-200 characters)\n{USAGE}");
                return ExitCode::from(2);
            };
            let tier = flag(&args, "--tier").unwrap_or_else(|| "free".into());
            if !TIERS.contains(&tier.as_str()) {
                eprintln!("--tier must be one of {}", TIERS.join(", "));
                return ExitCode::from(2);
            }
            let store = DynamoStore::new(client, table);
            match provision_tenant(&store, &name, &tier, flag(&args, "--api-key").as_deref()).await {
                Ok((tenant, key)) => {
                    println!("tenant_id={}", tenant.tenant_id);
                    println!("api_key={key}");
                    eprintln!("Store this key now: only its hash is kept and it cannot be shown again.");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("could not create the tenant: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
