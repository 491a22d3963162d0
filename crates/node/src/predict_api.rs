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

/// Most symptoms in one request (the knowledge table has a few hundred in all).
const MAX_SYMPTOMS: usize = 64;
/// Longest symptom name accepted.
const MAX_SYMPTOM_BYTES: usize = 64;
/// Most diseases one answer ranks.
const MAX_TOP: usize = 50;

fn default_top() -> usize {
    5
}

async fn predict(
    axum::extract::State(_): axum::extract::State<ApiState>,
    body: Result<crate::api::JsonBody<PredictRequest>, ApiError>,
) -> ApiResult<Prediction> {
    let crate::api::JsonBody(req) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "expected {{\"symptoms\": [\"fever\", …], \"top\": 5}}: {}",
                e.message
            ),
        )
    })?;
    // Bounds before any work: the "did you mean" search compares each unknown symptom with
    // every known one, so one 60 KB symptom used to cost seconds of CPU.
    if req.symptoms.len() > MAX_SYMPTOMS
        || req.symptoms.iter().any(|s| s.len() > MAX_SYMPTOM_BYTES)
        || req.top > MAX_TOP
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_large",
            format!(
                "at most {MAX_SYMPTOMS} symptoms of at most {MAX_SYMPTOM_BYTES} bytes each, and top at most {MAX_TOP}"
            ),
        ));
    }
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
