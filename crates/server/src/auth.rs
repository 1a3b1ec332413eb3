//! Projects and their keys: who may write to and read which project.
//!
//! With no project configured, authentication is off: OTLP, Zipkin and logs
//! write to [`DEFAULT_PROJECT`](crate::DEFAULT_PROJECT), Sentry to the project
//! named in its URL, and SQL reads every project.
//!
//! With projects (`lighttrace serve --project ID:KEY`, repeatable), every
//! request must carry a project's key:
//!
//! | API | where the key goes |
//! |---|---|
//! | OTLP/HTTP, Zipkin, logs, SQL | `Authorization: Bearer KEY`, or `x-lighttrace-key: KEY` |
//! | OTLP/gRPC | the same, as gRPC metadata |
//! | Sentry | the DSN's key (`X-Sentry-Auth`, `Authorization: Sentry …`, `sentry_key=`); the URL's project id must be the key's project |
//!
//! The request then writes to, or reads, that key's project only: SQL runs with
//! [`ProjectScope::Project`], enforced inside the table providers. A wrong or
//! missing key is answered 401 (gRPC `UNAUTHENTICATED`) and nothing is stored.
//! Keys are compared through their BLAKE3 hashes, whose equality is constant
//! time, so the time an answer takes says nothing about how much of a key
//! matched; keys never appear in logs or `Debug` output.

use std::fmt;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use lighttrace_query::ProjectScope;

/// The header that carries a key when `Authorization` is taken.
pub const KEY_HEADER: &str = "x-lighttrace-key";

/// One project and the hash of its key.
#[derive(Clone)]
pub struct ProjectKey {
    id: String,
    key_hash: blake3::Hash,
}

impl fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ProjectKey {
    /// `ID:KEY`. The id is what rows are stored under (Sentry SDKs need it to
    /// be digits); the key is any non-empty text without whitespace.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (id, key) = spec
            .split_once(':')
            .ok_or_else(|| "a project is ID:KEY (e.g. 42:s3cr3t)".to_string())?;
        let (id, key) = (id.trim(), key.trim());
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c == '/') {
            return Err(format!(
                "project id {id:?} must be 1 to 128 characters, no '/' or control characters"
            ));
        }
        if key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(format!(
                "the key of project {id:?} must be non-empty, without spaces"
            ));
        }
        Ok(ProjectKey {
            id: id.to_owned(),
            key_hash: blake3::hash(key.as_bytes()),
        })
    }

    /// The project id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The configured projects; empty means authentication is off.
#[derive(Debug, Clone, Default)]
pub struct Projects {
    keys: Vec<ProjectKey>,
}

/// Whom a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off.
    Anyone,
    /// The holder of this project's key.
    Project(String),
}

impl Caller {
    /// The project a receiver writes to (`default` when authentication is off).
    pub fn project_or<'a>(&'a self, default: &'a str) -> &'a str {
        match self {
            Caller::Anyone => default,
            Caller::Project(id) => id,
        }
    }

    /// What SQL may read.
    pub fn scope(&self) -> ProjectScope {
        match self {
            Caller::Anyone => ProjectScope::All,
            Caller::Project(id) => ProjectScope::Project(id.clone()),
        }
    }
}

/// Why a request was not authenticated (answered 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthenticated(pub &'static str);

impl fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Projects {
    /// Two projects with one id, or one key for two projects, are refused.
    pub fn new(keys: Vec<ProjectKey>) -> Result<Self, String> {
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[..i] {
                if a.id == b.id {
                    return Err(format!("project {:?} is configured twice", a.id));
                }
                if a.key_hash == b.key_hash {
                    return Err(format!(
                        "projects {:?} and {:?} have the same key",
                        b.id, a.id
                    ));
                }
            }
        }
        Ok(Projects { keys })
    }

    /// Whether requests must carry a key.
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The configured project ids.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The project whose key is `key`. Every configured key is compared, in
    /// constant time each.
    pub fn project_of_key(&self, key: &str) -> Option<&str> {
        let hash = blake3::hash(key.as_bytes());
        let mut found = None;
        for project in &self.keys {
            // blake3::Hash's equality is constant time.
            if project.key_hash == hash && found.is_none() {
                found = Some(project.id.as_str());
            }
        }
        found
    }

    /// The caller of an OTLP, Zipkin, logs or SQL request (HTTP headers or
    /// gRPC metadata as headers).
    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, Unauthenticated> {
        if !self.is_enabled() {
            return Ok(Caller::Anyone);
        }
        let key = bearer_key(headers).ok_or(Unauthenticated(
            "missing key: send `Authorization: Bearer KEY` or `x-lighttrace-key: KEY`",
        ))?;
        self.project_of_key(key)
            .map(|id| Caller::Project(id.to_owned()))
            .ok_or(Unauthenticated("unknown key"))
    }
}

/// The key of `Authorization: Bearer KEY`, else of `x-lighttrace-key`.
fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if let Some((scheme, key)) = value.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
            && !key.trim().is_empty()
        {
            return Some(key.trim());
        }
    }
    headers
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn projects() -> Projects {
        Projects::new(vec![
            ProjectKey::parse("1:alpha-key").unwrap(),
            ProjectKey::parse("2:beta-key").unwrap(),
        ])
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn parses_id_and_key_and_refuses_the_rest() {
        let key = ProjectKey::parse(" 42 : s3cr3t ").unwrap();
        assert_eq!(key.id(), "42");
        assert!(!format!("{key:?}").contains("s3cr3t"));
        for bad in ["42", ":key", "42:", "4/2:k", "42:a b"] {
            assert!(ProjectKey::parse(bad).is_err(), "{bad}");
        }
        let dup = Projects::new(vec![
            ProjectKey::parse("1:a").unwrap(),
            ProjectKey::parse("1:b").unwrap(),
        ]);
        assert!(dup.unwrap_err().contains("twice"));
        let same_key = Projects::new(vec![
            ProjectKey::parse("1:a").unwrap(),
            ProjectKey::parse("2:a").unwrap(),
        ]);
        assert!(same_key.unwrap_err().contains("same key"));
    }

    #[test]
    fn finds_the_caller_by_bearer_or_key_header() {
        let p = projects();
        assert_eq!(
            p.caller(&headers(&[("authorization", "Bearer beta-key")])),
            Ok(Caller::Project("2".into()))
        );
        assert_eq!(
            p.caller(&headers(&[("authorization", "bearer  alpha-key ")])),
            Ok(Caller::Project("1".into()))
        );
        assert_eq!(
            p.caller(&headers(&[("x-lighttrace-key", "alpha-key")])),
            Ok(Caller::Project("1".into()))
        );
        // A Sentry or Basic authorization does not hide the key header.
        assert_eq!(
            p.caller(&headers(&[
                ("authorization", "Basic abc"),
                ("x-lighttrace-key", "beta-key")
            ])),
            Ok(Caller::Project("2".into()))
        );
        assert!(
            p.caller(&headers(&[]))
                .unwrap_err()
                .0
                .contains("missing key")
        );
        assert_eq!(
            p.caller(&headers(&[("authorization", "Bearer alpha-ke")])),
            Err(Unauthenticated("unknown key"))
        );
        assert_eq!(
            Projects::default().caller(&headers(&[])),
            Ok(Caller::Anyone)
        );
        assert_eq!(Caller::Anyone.project_or("default"), "default");
        assert_eq!(
            Caller::Project("7".into()).scope(),
            ProjectScope::Project("7".into())
        );
    }
}
