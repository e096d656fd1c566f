//! Reading settings from environment variables with documented defaults.

use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

/// The variable's value, or `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => default.to_string(),
    }
}

/// The variable parsed as `T`, or `default` when unset or empty; a value that does not
/// parse is an error naming the variable (never silently replaced by the default).
pub fn env_parse<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid {
                name: name.to_string(),
                value: v.clone(),
                reason: e.to_string(),
            })
        }
        _ => Ok(default),
    }
}

/// `HTTP_ADDR`, accepting the short form `:8081` for "all interfaces, port 8081".
pub fn http_addr(default: &str) -> Result<std::net::SocketAddr, ConfigError> {
    let raw = env_or("HTTP_ADDR", default);
    let full = if raw.starts_with(':') {
        format!("0.0.0.0{raw}")
    } else {
        raw.clone()
    };
    full.parse()
        .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
            name: "HTTP_ADDR".into(),
            value: raw,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reports_the_variable() {
        std::env::set_var("ORDERFLOW_TEST_BAD_U64", "abc");
        let err = env_parse::<u64>("ORDERFLOW_TEST_BAD_U64", 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ORDERFLOW_TEST_BAD_U64") && err.contains("abc"),
            "{err}"
        );
        assert_eq!(env_parse::<u64>("ORDERFLOW_TEST_UNSET_U64", 7).unwrap(), 7);
    }

    #[test]
    fn short_http_addr() {
        std::env::set_var("HTTP_ADDR", ":8089");
        assert_eq!(http_addr(":1").unwrap().to_string(), "0.0.0.0:8089");
        std::env::remove_var("HTTP_ADDR");
        assert_eq!(http_addr("127.0.0.1:9").unwrap().to_string(), "127.0.0.1:9");
    }
}
