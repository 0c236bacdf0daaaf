//! Outbound HTTP with the limits of spec §2.11: connect timeout 5 s, total timeout at
//! most 300 s, no redirects, and a cap on the response body size.

use std::time::Duration;

use bytes::BytesMut;
use futures::StreamExt;

/// Limits applied to every outbound request.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Time allowed to open the connection.
    pub connect_timeout: Duration,
    /// Time allowed for the whole exchange (at most 300 s).
    pub timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(300),
            max_response_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Errors of an outbound call (network, timeout, size); HTTP error statuses are not errors.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL could not be parsed or has no scheme.
    #[error("URI {0} is invalid.")]
    InvalidUri(String),
    /// Timeout.
    #[error("request to {0} timed out")]
    Timeout(String),
    /// Connection or protocol error.
    #[error("request to {url} failed: {message}")]
    Network {
        /// Target URL (without query).
        url: String,
        /// Error description.
        message: String,
    },
    /// The response body exceeded the limit.
    #[error("response body from {url} exceeds {limit} bytes")]
    TooLarge {
        /// Target URL (without query).
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
}

/// A response with its body read.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order; repeated names joined with ", ".
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: bytes::Bytes,
}

impl HttpResponse {
    /// Header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A shared HTTP client with [`HttpLimits`].
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    limits: HttpLimits,
}

impl HttpClient {
    /// Build a client.
    pub fn new(limits: HttpLimits) -> HttpClient {
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.timeout.min(Duration::from_secs(300)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Ferry")
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        HttpClient { client, limits }
    }

    /// The underlying reqwest client (for building requests).
    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// The limits in force.
    pub fn limits(&self) -> &HttpLimits {
        &self.limits
    }

    /// Send a request and read the body within the size limit.
    pub async fn execute(&self, request: reqwest::Request) -> Result<HttpResponse, HttpError> {
        let mut url = request.url().clone();
        url.set_query(None);
        let url = url.to_string();
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                HttpError::Timeout(url.clone())
            } else {
                HttpError::Network {
                    url: url.clone(),
                    message: error_chain(&e),
                }
            }
        };
        let response = self.client.execute(request).await.map_err(failed)?;
        let status = response.status().as_u16();
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in response.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).to_string();
            if let Some(existing) = headers.iter_mut().find(|(k, _)| k == name.as_str()) {
                existing.1.push_str(", ");
                existing.1.push_str(&value);
            } else {
                headers.push((name.as_str().to_string(), value));
            }
        }
        let limit = self.limits.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|l| l as usize > limit)
        {
            return Err(HttpError::TooLarge {
                url: url.clone(),
                limit,
            });
        }
        let mut body = BytesMut::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(failed)?;
            if body.len() + chunk.len() > limit {
                return Err(HttpError::TooLarge {
                    url: url.clone(),
                    limit,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body: body.freeze(),
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Seconds to wait from a `Retry-After` value (spec §7.2): digits > 0 → that many seconds;
/// an HTTP date in the future → seconds until then; anything else → `default`.
pub fn retry_after_seconds(header: Option<&str>, default: u64) -> u64 {
    let Some(raw) = header.map(str::trim).filter(|s| !s.is_empty()) else {
        return default;
    };
    if raw.chars().all(|c| c.is_ascii_digit()) {
        return match raw.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => default,
        };
    }
    match httpdate::parse_http_date(raw) {
        Ok(when) => match when.duration_since(std::time::SystemTime::now()) {
            Ok(d) if d.as_secs() > 0 => d.as_secs(),
            _ => default,
        },
        Err(_) => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parsing() {
        assert_eq!(retry_after_seconds(None, 60), 60);
        assert_eq!(retry_after_seconds(Some(""), 60), 60);
        assert_eq!(retry_after_seconds(Some("7"), 60), 7);
        assert_eq!(retry_after_seconds(Some("0"), 60), 60);
        assert_eq!(retry_after_seconds(Some("soon"), 60), 60);
        assert_eq!(
            retry_after_seconds(Some("Wed, 21 Oct 2015 07:28:00 GMT"), 60),
            60
        );
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let n = retry_after_seconds(Some(&future), 60);
        assert!((100..=120).contains(&n), "{n}");
    }
}
