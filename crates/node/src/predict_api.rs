//! Decision support over the API: `POST /api/v1/predict` ranks diseases for a set of
//! symptoms with the built-in model (see the `ehrchain-ml` crate). The symptoms travel in the
//! body, not the URL, so they never reach access logs; nothing is stored or logged.

use crate::api::{ApiError, ApiResult, ApiState};
use axum::{Json, Router, http::StatusCode, routing::post};
use ehrchain_ml::{Model, PredictError, Prediction};
use serde::Deserialize;

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/predict", post(predict))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    symptoms: Vec<String>,
    #[serde(default = "default_top")]
    top: usize,
}

fn default_top() -> usize {
    5
}

async fn predict(
    axum::extract::State(_): axum::extract::State<ApiState>,
    body: Result<Json<PredictRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Prediction> {
    let Json(req) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("expected {{\"symptoms\": [\"fever\", …], \"top\": 5}}: {e}"),
        )
    })?;
    // The first call trains the built-in model (well under a second); do it off the
    // async workers.
    let p = tokio::task::spawn_blocking(move || Model::builtin().predict(&req.symptoms, req.top))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    p.map(Json).map_err(|e| {
        let code = match e {
            PredictError::Unknown { .. } => "unknown_symptom",
            _ => "bad_request",
        };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
    })
}
