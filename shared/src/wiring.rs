//! Cold-start wiring shared by every function's `main`: read configuration, set up tracing,
//! build the AWS clients once, then serve requests.

use crate::api::{self, App, Route};
use crate::config::Config;
use crate::store::dynamo::DynamoStore;
use lambda_http::{Request, service_fn};
use std::convert::Infallible;
use std::sync::Arc;

pub type Error = lambda_http::Error;

/// Configuration and AWS clients, built once per cold start. A bad variable stops the
/// function with one line naming it.
pub async fn app_from_env() -> App {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    };
    crate::telemetry::init(&config.log_level);
    let sdk_config = aws_config::load_from_env().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk_config), config.table_name.clone());
    App::new(config, Arc::new(store))
}

/// Serves `route` on the Lambda runtime until the instance is retired.
pub async fn serve(app: App, route: Route) -> Result<(), Error> {
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(api::handle(&app, route, req).await) }
    }))
    .await
}
