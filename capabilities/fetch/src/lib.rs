//! The `fetch` capability: HTTP for agents, through the host's authorized, recorded egress.
//!
//! `get` and `post` cover most uses; `request` sends any method with headers, secret headers
//! (a stored secret the host puts in a header; this capability never sees its value), and
//! smaller caps. A host the policy does not grant is an `Err("denied: …")`, never a trap.

#![allow(
    clippy::too_many_arguments,
    reason = "wit-bindgen's generated export glue; `request` has one optional argument per knob"
)]

femtoclaw_sdk::generate!({
    inline: r#"
        package femtoclaw:fetch@0.1.0;

        interface types {
            /// One header field.
            record header {
                name: string,
                value: string,
            }

            /// A header the host fills in: `prefix` followed by the value of the stored secret
            /// `secret` (`{name: "authorization", secret: "api-token", prefix: "Bearer "}`).
            record secret-header {
                name: string,
                secret: string,
                prefix: string,
            }

            /// A response, its body as text.
            record response {
                status: u16,
                headers: list<header>,
                /// The body, as UTF-8 (invalid bytes replaced).
                text: string,
                /// The URL that answered (after redirects).
                url: string,
            }
        }

        world fetch {
            include femtoclaw:host/capability@0.1.0;
            use types.{header, secret-header, response};

            /// `GET url` with optional extra headers; follows up to 5 redirects.
            export get: func(url: string, headers: option<list<header>>) -> result<response, string>;
            /// `POST url` with a text body of type `content-type`.
            export post: func(url: string, content-type: string, body: string, headers: option<list<header>>) -> result<response, string>;
            /// Any request. `max-redirects` defaults to 5 (0 returns a redirect as the response);
            /// `max-response-bytes` and `timeout-ms` may only lower the host's caps.
            export request: func(method: string, url: string, headers: option<list<header>>, secret-headers: option<list<secret-header>>, body: option<string>, max-redirects: option<u32>, max-response-bytes: option<u64>, timeout-ms: option<u32>) -> result<response, string>;
        }
    "#,
    path: "../../wit",
});

use femtoclaw_sdk::http as host;

struct Fetch;

/// Sends `request` and turns the answer into this capability's result.
fn send(request: &host::Request) -> Result<Response, String> {
    let response = host::send(request).map_err(|e| e.message())?;
    femtoclaw_sdk::log::debug(&format!(
        "{} {} -> {}",
        request.method, request.url, response.status
    ));
    Ok(Response {
        status: response.status,
        text: response.text(),
        headers: response
            .headers
            .into_iter()
            .map(|h| Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
        url: response.url,
    })
}

fn with_headers(mut request: host::Request, headers: Option<Vec<Header>>) -> host::Request {
    for h in headers.unwrap_or_default() {
        request = request.header(&h.name, &h.value);
    }
    request
}

impl Guest for Fetch {
    fn get(url: String, headers: Option<Vec<Header>>) -> Result<Response, String> {
        send(&with_headers(host::Request::get(&url), headers))
    }

    fn post(
        url: String,
        content_type: String,
        body: String,
        headers: Option<Vec<Header>>,
    ) -> Result<Response, String> {
        let request = host::Request::new("POST", &url)
            .header("content-type", &content_type)
            .body(body);
        send(&with_headers(request, headers))
    }

    fn request(
        method: String,
        url: String,
        headers: Option<Vec<Header>>,
        secret_headers: Option<Vec<SecretHeader>>,
        body: Option<String>,
        max_redirects: Option<u32>,
        max_response_bytes: Option<u64>,
        timeout_ms: Option<u32>,
    ) -> Result<Response, String> {
        let mut request =
            with_headers(host::Request::new(&method, &url), headers).body(body.unwrap_or_default());
        for s in secret_headers.unwrap_or_default() {
            request = request.secret_header(&s.name, &s.secret, &s.prefix);
        }
        if let Some(n) = max_redirects {
            request = request.max_redirects(n);
        }
        if let Some(bytes) = max_response_bytes {
            request = request.max_response_bytes(bytes);
        }
        if let Some(ms) = timeout_ms {
            request = request.timeout_ms(ms);
        }
        send(&request)
    }
}

export!(Fetch);
