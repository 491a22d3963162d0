//! (being written)

use crate::Portal;
use axum::Router;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Portal>> {
    Router::new()
}
