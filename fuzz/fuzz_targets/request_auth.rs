//! Fuzzes the signed-request header (`x-ehrchain-auth`) of the records API:
//! `RequestAuth::parse` and `RequestAuth::verify`.
#![no_main]

use ehrchain_fuzz::{CHAIN_ID, METHOD, PATH};
use ehrchain_types::request::{AuthError, RequestAuth};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: ehrchain_fuzz::write_seeds("request_auth"), |data: &[u8]| {
    // The API passes the header through `HeaderValue::to_str` (visible ASCII); any UTF-8 is a
    // superset of that.
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(auth) = RequestAuth::parse(value) else {
        return;
    };
    assert_eq!(RequestAuth::parse(&auth.header_value()), Ok(auth.clone()));
    // At the request's own time the signature is checked; far from it, only the clock.
    let _ = auth.verify(CHAIN_ID, METHOD, PATH, auth.timestamp_ms);
    if let Some(late) = auth.timestamp_ms.checked_add(3_600_000) {
        let skew = auth.verify(CHAIN_ID, METHOD, PATH, late);
        assert_eq!(skew, Err(AuthError::Skew(3600)));
    }
});
