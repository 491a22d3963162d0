//! Templates every module shares. Each page module declares its own page templates; they
//! all extend `templates/base.html`, which takes a [`Ctx`] named `ctx`.

use crate::web::Ctx;
use askama::Template;

/// An error page.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorTpl {
    pub ctx: Ctx,
    pub title: &'static str,
    pub message: String,
}

/// A time in ms since the epoch as `2026-11-30 22:15 UTC`.
pub fn when(ms: &u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(*ms);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // 2026-11-30T22:15:07Z -> 2026-11-30 22:15 UTC
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => s,
    }
}

/// A short form of a long id (`ehr1abcd…wxyz`) for tables; the full id goes in `title`.
pub fn short(id: &str) -> String {
    let n = id.chars().count();
    if n <= 16 {
        return id.to_string();
    }
    let head: String = id.chars().take(10).collect();
    let tail: String = id.chars().skip(n - 6).collect();
    format!("{head}…{tail}")
}

/// Bytes as `1.2 MB`.
pub fn bytes(n: &u64) -> String {
    let n = *n as f64;
    if n < 1024.0 {
        format!("{n} B")
    } else if n < 1024.0 * 1024.0 {
        format!("{:.1} KB", n / 1024.0)
    } else if n < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MB", n / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GB", n / 1024.0 / 1024.0 / 1024.0)
    }
}
