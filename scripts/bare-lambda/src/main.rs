//! The package benchmark's baseline: what any lambda_http function costs, answering a health
//! check with no AWS client. NodeAI's functions are measured as ratios to this one.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_: Request| async {
        let body = serde_json::json!({ "status": "ok" }).to_string();
        Ok::<_, Error>(
            Response::builder().status(200).header("content-type", "application/json").body(Body::Text(body))?,
        )
    }))
    .await
}
