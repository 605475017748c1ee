//! The HTTP types in the ledger's canonical form: records by field (WIT names, in WIT order),
//! the error as a variant with its message.

use super::{Error, Header, Request, Response, SecretHeader};
use crate::gate::{recorded_record, recorded_variant};

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

recorded_variant!(Error {
    Denied(String) => "denied",
    InvalidRequest(String) => "invalid-request",
    Dns(String) => "dns",
    Connection(String) => "connection",
    Timeout(String) => "timeout",
    TooLarge(String) => "too-large",
    TooManyRedirects(String) => "too-many-redirects",
    Protocol(String) => "protocol",
});

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use femtoclaw_ledger::Value;

    use super::*;
    use crate::gate::Recorded;

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
