//! [`QueryError`]: what can go wrong with a user's SQL, sorted by who is to blame.

use std::fmt;
use std::time::Duration;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Errors of [`QueryEngine::sql`](crate::QueryEngine::sql).
///
/// Every message is safe to show to the user who sent the SQL; the server maps
/// the variants to HTTP status codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The sandbox refused the statement: which statement class, and why.
    #[error("{0}")]
    Refused(String),
    /// The SQL does not parse or does not plan (unknown column, type mismatch …).
    #[error("{0}")]
    Invalid(String),
    /// The query ran past the engine's time limit and was cancelled.
    #[error("query exceeded the {} time limit", DisplaySeconds(*.0))]
    Timeout(Duration),
    /// The query needed more memory than the engine allows one query.
    #[error("{0}")]
    ResourcesExhausted(String),
    /// Anything else: a bug or a storage failure, not the user's fault.
    #[error("{0}")]
    Internal(String),
}

/// `30 s`, `1.5 s`, `0.25 s`.
struct DisplaySeconds(Duration);

impl fmt::Display for DisplaySeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // f64's Display prints the shortest text that round-trips: `30`, `1.5`.
        write!(f, "{} s", self.0.as_secs_f64())
    }
}

impl QueryError {
    /// Classifies a DataFusion error; `memory_limit_bytes` goes into the message
    /// of a memory failure.
    pub(crate) fn from_datafusion(err: DataFusionError, memory_limit_bytes: usize) -> Self {
        let root = err.find_root();
        let message = root.strip_backtrace();
        match root {
            DataFusionError::ResourcesExhausted(_) => QueryError::ResourcesExhausted(format!(
                "query exceeded the memory limit of {memory_limit_bytes} bytes: {message}"
            )),
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_)
            // Execution errors are raised by functions on bad input values
            // (`to_timestamp('x')`, a failed cast …): the user's SQL is to blame.
            | DataFusionError::Execution(_) => QueryError::Invalid(message),
            DataFusionError::ArrowError(arrow, _) if is_user_arrow_error(arrow) => {
                QueryError::Invalid(message)
            }
            _ => QueryError::Internal(message),
        }
    }
}

fn is_user_arrow_error(err: &ArrowError) -> bool {
    matches!(
        err,
        ArrowError::CastError(_)
            | ArrowError::ParseError(_)
            | ArrowError::DivideByZero
            | ArrowError::ArithmeticOverflow(_)
            | ArrowError::ComputeError(_)
            | ArrowError::InvalidArgumentError(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_message_names_the_limit() {
        assert_eq!(
            QueryError::Timeout(Duration::from_secs(30)).to_string(),
            "query exceeded the 30 s time limit"
        );
        assert_eq!(
            QueryError::Timeout(Duration::from_millis(1500)).to_string(),
            "query exceeded the 1.5 s time limit"
        );
    }

    #[test]
    fn memory_errors_are_found_under_context() {
        let err = DataFusionError::ResourcesExhausted("Failed to allocate 10 bytes".into())
            .context("while sorting");
        let mapped = QueryError::from_datafusion(err, 1024);
        assert!(
            matches!(&mapped, QueryError::ResourcesExhausted(m)
                if m.starts_with("query exceeded the memory limit of 1024 bytes: ")),
            "{mapped:?}"
        );
    }
}
