//! The HTTP types in the ledger's canonical form: records by field (WIT names, in WIT order),
//! the error as a variant with its message.

use femtoclaw_ledger::Value;

use super::{Error, Header, Request, Response, SecretHeader};
use crate::gate::{Recorded, recorded_record};

recorded_record!(Header {
    name: "name",
    value: "value",
});
recorded_record!(SecretHeader {
    name: "name",
    secret: "secret",
    prefix: "prefix",
});
recorded_record!(Request {
    method: "method",
    url: "url",
    headers: "headers",
    secret_headers: "secret-headers",
    body: "body",
    max_redirects: "max-redirects",
    max_response_bytes: "max-response-bytes",
    timeout_ms: "timeout-ms",
});
recorded_record!(Response {
    status: "status",
    headers: "headers",
    body: "body",
    url: "url",
});

/// Implements [`Recorded`] for a WIT variant whose every case carries a string.
macro_rules! recorded_string_variant {
    ($ty:ident { $($case:ident => $name:literal),* $(,)? }) => {
        impl Recorded for $ty {
            fn to_value(&self) -> Value {
                let (case, text) = match self {
                    $($ty::$case(t) => ($name, t)),*
                };
                Value::Variant {
                    case: case.to_owned(),
                    payload: Some(Box::new(Value::String(text.clone()))),
                }
            }
            fn from_value(value: &Value) -> Option<Self> {
                let Value::Variant { case, payload: Some(payload) } = value else {
                    return None;
                };
                let Value::String(text) = payload.as_ref() else {
                    return None;
                };
                match case.as_str() {
                    $($name => Some($ty::$case(text.clone())),)*
                    _ => None,
                }
            }
        }
    };
}

recorded_string_variant!(Error {
    Denied => "denied",
    InvalidRequest => "invalid-request",
    Dns => "dns",
    Connection => "connection",
    Timeout => "timeout",
    TooLarge => "too-large",
    TooManyRedirects => "too-many-redirects",
    Protocol => "protocol",
});

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn requests_responses_and_errors_round_trip() {
        let request = Request {
            method: "POST".into(),
            url: "https://example.com/x".into(),
            headers: vec![Header {
                name: "accept".into(),
                value: "*/*".into(),
            }],
            secret_headers: vec![SecretHeader {
                name: "authorization".into(),
                secret: "token".into(),
                prefix: "Bearer ".into(),
            }],
            body: b"hi".to_vec(),
            max_redirects: 3,
            max_response_bytes: Some(10),
            timeout_ms: None,
        };
        let value = request.to_value();
        let Value::Record(fields) = &value else {
            panic!("{value:?}")
        };
        assert_eq!(fields[3].0, "secret-headers");
        let back = Request::from_value(&value).unwrap();
        assert_eq!(back.to_value(), value);

        let response = Response {
            status: 200,
            headers: Vec::new(),
            body: vec![0, 1],
            url: "https://example.com/x".into(),
        };
        assert_eq!(
            Response::from_value(&response.to_value())
                .unwrap()
                .to_value(),
            response.to_value()
        );
        let error = Error::TooLarge("big".into());
        assert!(matches!(
            Error::from_value(&error.to_value()),
            Some(Error::TooLarge(t)) if t == "big"
        ));
        assert!(Request::from_value(&response.to_value()).is_none());
    }
}
