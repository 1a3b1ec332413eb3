//! Trace and span ids: fixed-size byte arrays, shown as lowercase hex.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{what} must be {expected} bytes, got {got}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what} must not be all zeros")]
    AllZero { what: &'static str },
    #[error("{what} is not hex: {text:?}")]
    NotHex { what: &'static str, text: String },
}

/// Lowercase hex of `bytes`, appended to `out`.
pub fn hex_lower(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
}

macro_rules! id_type {
    ($name:ident, $len:expr, $what:expr) => {
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            /// A valid id: exactly the right length and not all zeros.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| IdError::WrongLength {
                    what: $what,
                    expected: $len,
                    got: bytes.len(),
                })?;
                if arr == [0u8; $len] {
                    return Err(IdError::AllZero { what: $what });
                }
                Ok(Self(arr))
            }

            /// Parse hex in any case; shorter input is left-padded with zeros.
            pub fn parse_hex(text: &str) -> Result<Self, IdError> {
                let text = text.trim();
                if text.is_empty() || text.len() > $len * 2 {
                    return Err(IdError::NotHex {
                        what: $what,
                        text: text.chars().take(64).collect(),
                    });
                }
                let padded = format!("{:0>width$}", text, width = $len * 2);
                let bytes = hex::decode(&padded).map_err(|_| IdError::NotHex {
                    what: $what,
                    text: text.chars().take(64).collect(),
                })?;
                Self::from_bytes(&bytes)
            }

            pub fn to_hex(&self) -> String {
                let mut s = String::with_capacity($len * 2);
                hex_lower(&self.0, &mut s);
                s
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
    };
}

id_type!(TraceId, 16, "trace id");
id_type!(SpanId, 8, "span id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_round_trips_and_pads() {
        let id = TraceId::parse_hex("ABC").unwrap();
        assert_eq!(id.to_hex(), "00000000000000000000000000000abc");
        assert_eq!(TraceId::parse_hex(&id.to_hex()).unwrap(), id);
    }

    #[test]
    fn all_zero_and_wrong_length_are_rejected() {
        assert_eq!(
            SpanId::from_bytes(&[0; 8]),
            Err(IdError::AllZero { what: "span id" })
        );
        assert!(matches!(
            TraceId::from_bytes(&[1; 8]),
            Err(IdError::WrongLength { .. })
        ));
        assert!(TraceId::parse_hex("xyz").is_err());
        assert!(TraceId::parse_hex(&"1".repeat(33)).is_err());
    }
}
