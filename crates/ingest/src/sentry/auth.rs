//! Where the Sentry SDKs put the DSN's public key.
//!
//! * `X-Sentry-Auth: Sentry sentry_key=KEY, sentry_version=7, sentry_client=…`
//!   (the Python SDK);
//! * `Authorization: Sentry sentry_key=KEY, …` (the same pairs);
//! * the query string: `?sentry_key=KEY&sentry_version=7` (the JavaScript SDKs);
//! * the envelope header's `dsn`: `http://KEY@host/PROJECT_ID`.

use std::borrow::Cow;

/// The `sentry_key` of an `X-Sentry-Auth` or `Authorization` header value:
/// comma-separated `name=value` pairs after the scheme `Sentry` (optional in
/// `X-Sentry-Auth`; the caller checks the scheme of `Authorization`). Values
/// may be quoted. `None` when there is no non-empty key.
pub fn sentry_key_from_auth_header(value: &str) -> Option<&str> {
    let value = value.trim();
    let pairs = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("sentry ") => &value[7..],
        _ => value,
    };
    pairs.split(',').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("sentry_key") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then_some(value)
    })
}

/// The `sentry_key` parameter of a URL query string (without the `?`),
/// percent-decoded.
pub fn sentry_key_from_query(query: &str) -> Option<Cow<'_, str>> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if name != "sentry_key" || value.is_empty() {
            return None;
        }
        Some(percent_decode(value))
    })
}

/// The public key of a DSN: `scheme://KEY[:SECRET]@host[:port]/PROJECT_ID`.
pub fn sentry_key_from_dsn(dsn: &str) -> Option<&str> {
    let (_, rest) = dsn.trim().split_once("://")?;
    let (userinfo, _) = rest.split_once('@')?;
    let key = userinfo.split(':').next()?;
    (!key.is_empty() && !key.contains('/')).then_some(key)
}

/// `%XX` escapes and `+` (a space in a form-encoded query) decoded; invalid
/// escapes and invalid UTF-8 are kept as they are.
fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(decoded) => Cow::Owned(decoded),
        Err(_) => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_headers_of_the_sdks() {
        let python =
            "Sentry sentry_key=abc123, sentry_version=7, sentry_client=sentry.python/2.75.0";
        assert_eq!(sentry_key_from_auth_header(python), Some("abc123"));
        assert_eq!(
            sentry_key_from_auth_header("sentry_version=7,sentry_key=k"),
            Some("k")
        );
        assert_eq!(
            sentry_key_from_auth_header(r#"SENTRY sentry_key="quoted", sentry_secret=s"#),
            Some("quoted")
        );
        assert_eq!(sentry_key_from_auth_header("Sentry sentry_version=7"), None);
        assert_eq!(sentry_key_from_auth_header("Sentry sentry_key="), None);
        assert_eq!(sentry_key_from_auth_header(""), None);
    }

    #[test]
    fn query_strings_of_the_javascript_sdks() {
        assert_eq!(
            sentry_key_from_query(
                "sentry_version=7&sentry_key=abc&sentry_client=sentry.javascript.node%2F11.12.0"
            )
            .as_deref(),
            Some("abc")
        );
        assert_eq!(
            sentry_key_from_query("sentry_key=a%2Fb+c").as_deref(),
            Some("a/b c")
        );
        assert_eq!(
            sentry_key_from_query("sentry_key=%zz%4").as_deref(),
            Some("%zz%4")
        );
        assert_eq!(sentry_key_from_query("sentry_key=").as_deref(), None);
        assert_eq!(sentry_key_from_query("").as_deref(), None);
    }

    #[test]
    fn dsns() {
        assert_eq!(
            sentry_key_from_dsn("http://public@127.0.0.1:4318/42"),
            Some("public")
        );
        assert_eq!(
            sentry_key_from_dsn("https://public:secret@sentry.io/1"),
            Some("public")
        );
        assert_eq!(sentry_key_from_dsn("https://sentry.io/1"), None);
        assert_eq!(sentry_key_from_dsn("not a dsn"), None);
    }
}
