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

/// The last instant RFC 3339 can write (9999-12-31T23:59:59Z), in ms.
pub const LAST_WRITABLE_MS: u64 = 253_402_300_799_999;

/// A time in ms since the epoch as RFC 3339 to the second (`2026-11-30T22:15:07Z`), or `None`
/// past year 9999 (times on the ledger are whatever a signer wrote; they must never break a
/// page).
pub fn rfc3339(ms: u64) -> Option<String> {
    if ms > LAST_WRITABLE_MS {
        return None;
    }
    let t = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms))?;
    let mut s = String::new();
    std::fmt::Write::write_fmt(
        &mut s,
        format_args!("{}", humantime::format_rfc3339_seconds(t)),
    )
    .ok()?;
    Some(s)
}

/// A time in ms since the epoch as `2026-11-30 22:15 UTC`.
pub fn when(ms: &u64) -> String {
    let Some(s) = rfc3339(*ms) else {
        return "after year 9999".into();
    };
    // 2026-11-30T22:15:07Z -> 2026-11-30 22:15 UTC
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => s,
    }
}

/// Whether `c` must not be shown as it is: control characters and the invisible formatting
/// ones (bidirectional overrides and isolates, zero-width marks) that make text read other
/// than it is (a file `evil\u{202E}fdp.exe` shown as `evilexe.pdf`).
pub fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
            | '\u{061C}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Text someone else wrote (a title, a file name), made safe to show: hidden characters
/// become U+FFFD. (HTML escaping is the templates' job.)
pub fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if is_hidden_char(c) { '\u{FFFD}' } else { c })
        .collect()
}

/// Categories as words, `lab, imaging`.
pub fn category_list(c: &[ehrchain_types::Category]) -> String {
    c.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_time_on_the_ledger_renders() {
        assert_eq!(when(&0), "1970-01-01 00:00 UTC");
        assert_eq!(when(&LAST_WRITABLE_MS), "9999-12-31 23:59 UTC");
        assert_eq!(when(&(LAST_WRITABLE_MS + 1)), "after year 9999");
        assert_eq!(when(&u64::MAX), "after year 9999");
    }

    #[test]
    fn hidden_characters_are_shown_as_replacements() {
        assert_eq!(plain("evil\u{202E}fdp.exe"), "evil\u{FFFD}fdp.exe");
        assert_eq!(plain("a\u{200B}b\nc"), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(plain("Röntgen — Knie"), "Röntgen — Knie");
    }
}
