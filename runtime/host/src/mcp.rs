//! MCP: every capability function this principal may invoke is an MCP tool, called through the
//! same orchestration as the HTTP API ([`crate::host::Host::invoke`]: authorization, fuel,
//! deadline, write-ahead, receipt), on the official Rust SDK (rmcp).
//!
//! - **Names**: `<capability>.<function>`; a function of an exported interface is
//!   `<capability>.<interface>.<function>`, with the interface's short name
//!   (`femtoclaw:types-guest/math@0.1.0#double` of `types` is `types.math.double`). A name
//!   outside `[A-Za-z0-9_.-]` or longer than 128 characters is not offered; a capability two
//!   of whose functions would share a name is refused at install ([`colliding_tool`]).
//! - **Schemas**: `inputSchema` is the function's argument schema (`capability inspect`'s) kept
//!   to the subset model vendors accept for tool parameters ([`portable`]: no `anyOf`, no
//!   `const`, no list-valued `type`); `outputSchema` is an object with one property, `result`,
//!   holding the WIT result's exact schema, since MCP's structured content is an object
//!   whatever the function returns (clients validate results against it; models do not read
//!   it).
//! - **Results**: `structuredContent` is `{"result": …}`, and the same JSON is the text block;
//!   `_meta["femtoclaw/receipt"]` is the receipt (invocation, entry range, tree size, root,
//!   checkpoint). A denial, a guest error, fuel exhaustion or a deadline is a result with
//!   `isError: true` and a one-line reason; an unknown tool or malformed arguments are JSON-RPC
//!   errors.
//!
//! `femtoclaw-host mcp` serves it over stdio (see [`serve_stdio`]); `femtoclaw-host serve`
//! over streamable HTTP at `/mcp` (see [`http_service`]), each request authenticated by its
//! bearer token like the rest of the API.

use std::sync::Arc;

use femtoclaw_policy::Principal;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, MetaObject, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Map, Value as Json, json};

use femtoclaw_sandbox::watchdog::Cancel;

use crate::exit::{Code, Failure};
use crate::host::{Bounds, Host};

/// The `_meta` key of a result's receipt.
pub const RECEIPT_KEY: &str = "femtoclaw/receipt";

/// How long a client may keep a tool list before asking again, in milliseconds: capabilities
/// and the policy change while the host serves.
const LIST_TTL_MS: u64 = 5_000;

/// How often a session checks that its client is still there and whether the policy changed.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest tool name MCP clients accept.
const MAX_TOOL_NAME: usize = 128;

/// The first tool name that two of `functions` of `capability` would share (functions of
/// exported interfaces with the same short name from different packages), with those two
/// functions: such a capability is refused at install, so that every tool name is one function.
pub fn colliding_tool<'a>(
    capability: &str,
    functions: impl IntoIterator<Item = &'a str>,
) -> Option<(String, &'a str, &'a str)> {
    let mut seen = std::collections::BTreeMap::new();
    functions.into_iter().find_map(|f| {
        let name = tool_name(capability, f)?;
        seen.insert(name.clone(), f).map(|first| (name, first, f))
    })
}

/// One tool: what MCP calls it, and the capability function behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRef {
    /// The tool's name.
    pub name: String,
    /// `name@version` of the capability.
    pub capability: String,
    /// The function, as the sandbox calls it.
    pub function: String,
}

/// The tool name of `function` of `capability`, if it is a valid one.
pub fn tool_name(capability: &str, function: &str) -> Option<String> {
    let name = match function.split_once('#') {
        Some((interface, f)) => {
            let short = interface
                .rsplit_once('/')
                .map_or(interface, |(_, rest)| rest);
            let short = short.split_once('@').map_or(short, |(name, _)| name);
            format!("{capability}.{short}.{f}")
        }
        None => format!("{capability}.{function}"),
    };
    let valid = name.len() <= MAX_TOOL_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    valid.then_some(name)
}

/// The tools `principal` may call on `host`, in a deterministic order (catalog order, then
/// export order), each with its MCP description: of each capability its highest version
/// `principal` may invoke, and only the tools `mcp.tools_allow` lists (when it lists any) and
/// `mcp.tools_deny` does not.
pub fn tools(host: &Host, principal: &Principal) -> Result<Vec<(ToolRef, Tool)>, Failure> {
    tools_of(host, principal, None)
}

/// [`tools`], of the capability named `only` when given.
fn tools_of(
    host: &Host,
    principal: &Principal,
    only: Option<&str>,
) -> Result<Vec<(ToolRef, Tool)>, Failure> {
    let exposed = &host.config.mcp;
    let offered = |name: &String| {
        (exposed.tools_allow.is_empty() || exposed.tools_allow.contains(name))
            && !exposed.tools_deny.contains(name)
    };
    let invocable = host.invocable(principal, only)?;
    let mut tools = Vec::new();
    for (at, (resolved, functions)) in invocable.iter().enumerate() {
        let m = &resolved.entry.manifest;
        // One version of a capability is offered, the highest (the catalog lists versions in
        // ascending order), as `invoke name` picks: tool names stay unique.
        if invocable[at + 1..]
            .iter()
            .any(|(later, _)| later.entry.manifest.name == m.name)
        {
            continue;
        }
        for f in functions {
            let Some(name) = tool_name(&m.name, &f.name)
                .filter(|name| f.unsupported().is_none() && offered(name))
            else {
                continue;
            };
            let input = object(portable(f.args_schema()));
            let output = object(json!({
                "type": "object",
                "properties": { "result": f.result_schema() },
                "required": ["result"],
            }));
            let description = f.doc.clone().unwrap_or_else(|| m.description.clone());
            let tool = Tool::new(name.clone(), description, Arc::new(input))
                .with_raw_output_schema(Arc::new(output));
            let capability = format!("{}@{}", m.name, m.version);
            tools.push((
                ToolRef {
                    name,
                    capability,
                    function: f.name.clone(),
                },
                tool,
            ));
        }
    }
    Ok(tools)
}

/// `schema` within the subset of JSON Schema the big model vendors accept for tool parameters:
/// no `anyOf`, no `const`, no list-valued `type`. What this module's value scheme expresses
/// with them is offered in a narrower form the host still accepts:
///
/// - an `option<T>` (`anyOf` null or `T`) is offered as `T`: an optional parameter or record
///   field is left out of `required`, and leaving it out is `none`; an option inside a list or
///   tuple can then only be given as a value;
/// - a float (`anyOf` number or the names of the non-finite values) is offered as a number;
/// - a variant case without a payload (`anyOf` its name as a `const`, or `{name: null}`) is
///   offered as its name, an `enum` of one.
pub fn portable(schema: Json) -> Json {
    match schema {
        Json::Object(mut map) => {
            if let Some(Json::Array(arms)) = map.remove("anyOf") {
                let arms: Vec<Json> = arms.into_iter().map(portable).collect();
                let narrowed = match arms.as_slice() {
                    [null, some] if null == &json!({ "type": "null" }) => some.clone(),
                    [number, names]
                        if number == &json!({ "type": "number" })
                            && names.get("enum").is_some() =>
                    {
                        number.clone()
                    }
                    [name, _] if name.get("const").is_some() => {
                        json!({ "enum": [name["const"].clone()] })
                    }
                    _ => arms.first().cloned().unwrap_or_else(|| json!({})),
                };
                let mut narrowed = match narrowed {
                    Json::Object(n) => n,
                    _ => Map::new(),
                };
                // What sat beside the `anyOf` (a description, say) stays.
                for (key, value) in map {
                    narrowed.entry(key).or_insert(portable(value));
                }
                return Json::Object(narrowed);
            }
            Json::Object(map.into_iter().map(|(k, v)| (k, portable(v))).collect())
        }
        Json::Array(items) => Json::Array(items.into_iter().map(portable).collect()),
        other => other,
    }
}

fn object(schema: Json) -> Map<String, Json> {
    match schema {
        Json::Object(map) => map,
        _ => Map::new(),
    }
}

/// What a held turn is: dropped when its call ends.
pub type TurnGuard = Box<dyn Send>;

/// The turn an MCP call over HTTP takes before it runs, as `POST /v1/invoke` does (the
/// server's concurrency, queue and per-principal limits): the guard to hold while it runs and
/// what is left of its request's time, or why none was given (a refusal the server recorded).
pub type Turns = Arc<
    dyn Fn(
            Principal,
            ToolRef,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<(TurnGuard, std::time::Duration), String>> + Send>,
        > + Send
        + Sync,
>;

/// One MCP server: the host, and whom it acts for.
#[derive(Clone)]
pub struct Server {
    host: Arc<Host>,
    /// The principal of a stdio session; over HTTP, each request's own (see [`Server::http`]).
    principal: Option<Principal>,
    /// The server's turns, over HTTP; a stdio session runs its calls one by one.
    turns: Option<Turns>,
}

impl Server {
    /// A server acting for `principal` on `host` (a stdio session).
    pub fn new(host: Arc<Host>, principal: Principal) -> Self {
        Self {
            host,
            principal: Some(principal),
            turns: None,
        }
    }

    /// A server acting, for each request, for the principal the HTTP layer authenticated and
    /// put in the request's extensions, each call taking one of `turns`.
    pub fn http(host: Arc<Host>, turns: Turns) -> Self {
        Self {
            host,
            principal: None,
            turns: Some(turns),
        }
    }

    /// Whom `context`'s request acts for.
    fn principal(&self, context: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
        self.principal
            .clone()
            .or_else(|| {
                context
                    .extensions
                    .get::<axum::http::request::Parts>()
                    .and_then(|parts| parts.extensions.get::<Principal>())
                    .cloned()
            })
            .ok_or_else(|| ErrorData::invalid_request("the request names no principal", None))
    }
}

/// The tool `name` among those `principal` may call, or the JSON-RPC error of a call that
/// names none (on a blocking thread).
fn find(host: &Host, principal: &Principal, name: &str) -> Result<ToolRef, ErrorData> {
    // A tool's name starts with its capability's, which has no `.`: only that capability is
    // resolved, not the whole catalog.
    let capability = name
        .split_once('.')
        .map_or(name, |(capability, _)| capability);
    tools_of(host, principal, Some(capability))
        .map_err(|f| ErrorData::internal_error(f.message, None))?
        .into_iter()
        .map(|(tool, _)| tool)
        .find(|tool| tool.name == name)
        .ok_or_else(|| {
            ErrorData::invalid_params(
                format!("there is no tool `{name}` for this principal"),
                None,
            )
        })
}

/// Runs `tool` with `arguments` for `principal` within `deadline` (on a blocking thread),
/// recording the caller's `trace_id`, until `cancel` is set: the tool result, or the JSON-RPC error of arguments that do not fit.
fn run(
    host: &Host,
    principal: &Principal,
    tool: &ToolRef,
    arguments: Option<Map<String, Json>>,
    deadline: Option<std::time::Duration>,
    cancel: Cancel,
    trace_id: Option<[u8; 16]>,
) -> Result<CallToolResult, ErrorData> {
    let args = Json::Object(arguments.unwrap_or_default());
    let bounds = Bounds {
        deadline,
        cancel,
        trace_id,
        ..Bounds::default()
    };
    let invoked = host
        .resolve(&tool.capability)
        .and_then(|resolved| host.invoke(principal, &resolved, &tool.function, &args, bounds));
    let invoked = match invoked {
        Ok(invoked) => invoked,
        // Arguments that do not fit the schema are the caller's mistake, not the tool's.
        Err(failure) if failure.code == Code::InvalidArgs => {
            return Err(ErrorData::invalid_params(failure.message, None));
        }
        Err(failure) => return Ok(error_result(&failure)),
    };
    let result = match invoked.outcome.result.as_ref() {
        Ok(result) => result.clone(),
        Err(failure) => return Ok(error_result(&Failure::from(failure))),
    };
    let mut meta = MetaObject::default();
    meta.0
        .insert(RECEIPT_KEY.to_owned(), invoked.receipt_json());
    Ok(CallToolResult::structured(json!({ "result": result })).with_meta(Some(meta)))
}

/// A failed invocation as a tool result the model can act on: `isError`, one line.
fn error_result(failure: &Failure) -> CallToolResult {
    let line = failure.message.lines().next().unwrap_or_default();
    error_line(&format!("{}: {line}", failure.code.name()))
}

fn error_line(line: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(line)])
}

/// Sends `peer` `notifications/tools/list_changed` at each install or removal of a capability
/// (at once) and each change of the policy in force (seen within [`WATCH_INTERVAL`]), until its
/// session ends.
async fn tell_of_changes(host: Arc<Host>, peer: rmcp::Peer<RoleServer>) {
    let policy_digest = |host: Arc<Host>| async move {
        tokio::task::spawn_blocking(move || host.authority.policy().ok().map(|p| p.digest()))
            .await
            .ok()
            .flatten()
    };
    let mut catalog = host.catalog.changes();
    let mut policy = policy_digest(Arc::clone(&host)).await;
    loop {
        let changed = match tokio::time::timeout(WATCH_INTERVAL, catalog.changed()).await {
            Ok(Ok(())) => true,
            Ok(Err(_catalog_gone)) => break,
            Err(_elapsed) if peer.is_transport_closed() => break,
            Err(_elapsed) => {
                let now = policy_digest(Arc::clone(&host)).await;
                std::mem::replace(&mut policy, now) != now
            }
        };
        if changed && peer.notify_tool_list_changed().await.is_err() {
            break;
        }
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(
            "femtoclaw-host",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Every tool is a sandboxed capability function; every call is authorized and recorded in a signed ledger, its receipt in the result's _meta[\"femtoclaw/receipt\"].",
        )
    }

    /// From the client's `initialized` on, it is told when its tool list may have changed
    /// (see [`tell_of_changes`]).
    fn on_initialized(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + Send + '_ {
        tokio::spawn(tell_of_changes(Arc::clone(&self.host), context.peer));
        std::future::ready(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let host = Arc::clone(&self.host);
        let principal = self.principal(&context)?;
        let listed = tokio::task::spawn_blocking(move || tools(&host, &principal))
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?
            .map_err(|f| ErrorData::internal_error(f.message, None))?;
        let tools = listed.into_iter().map(|(_, tool)| tool).collect();
        Ok(ListToolsResult::with_all_items(tools).with_ttl_ms(LIST_TTL_MS))
    }

    /// The call runs in a `femtoclaw.request` span (OpenTelemetry MCP conventions), a child
    /// of the caller's trace context: `_meta.traceparent` when the request carries one, else
    /// the HTTP request's `traceparent` header; its trace id is recorded in the invocation.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        use tracing::Instrument as _;
        let parts = context.extensions.get::<axum::http::request::Parts>();
        let parent = trace_parent(&request, &context);
        let session = parts
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok());
        let span = crate::telemetry::mcp_request_span(
            "tools/call",
            &request.name,
            &context.id.to_string(),
            session,
            parent,
        );
        let called = self
            .call(request, context, parent.map(|p| p.trace_id))
            .instrument(span.clone())
            .await;
        let failed = match &called {
            Ok(response) => response_is_error(response).then_some("tool_error"),
            Err(_) => Some("jsonrpc_error"),
        };
        if let Some(kind) = failed {
            span.record("error.type", kind);
            span.record("otel.status_code", "error");
        }
        called
    }
}

/// The caller's trace context of an MCP call: its `_meta.traceparent`, else (over HTTP) its
/// request's `traceparent` header; a malformed one is none.
fn trace_parent(
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Option<crate::telemetry::TraceParent> {
    let in_meta = request
        .meta
        .as_ref()
        .and_then(|meta| meta.get("traceparent"))
        .or_else(|| context.meta.get("traceparent"));
    match in_meta {
        Some(value) => value
            .as_str()
            .and_then(crate::telemetry::TraceParent::parse),
        None => context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| crate::telemetry::TraceParent::from_headers(&parts.headers)),
    }
}

/// Whether a tool's answer is a result with `isError`.
fn response_is_error(response: &CallToolResponse) -> bool {
    matches!(response, CallToolResponse::Complete(result) if result.is_error == Some(true))
}

impl Server {
    /// A `tools/call`: find the tool, take a turn, run it (on a blocking thread, in the
    /// current span), until it ends or the client withdraws it.
    async fn call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
        trace_id: Option<[u8; 16]>,
    ) -> Result<CallToolResponse, ErrorData> {
        let joined = |e: tokio::task::JoinError| ErrorData::internal_error(e.to_string(), None);
        let principal = self.principal(&context)?;
        let (host, who, name) = (
            Arc::clone(&self.host),
            principal.clone(),
            request.name.to_string(),
        );
        let tool = tokio::task::spawn_blocking(move || find(&host, &who, &name))
            .await
            .map_err(joined)??;
        let (turn, deadline) = match &self.turns {
            Some(turns) => match turns(principal.clone(), tool.clone()).await {
                Ok((turn, left)) => (Some(turn), Some(left)),
                Err(refused) => return Ok(error_line(&format!("busy: {refused}")).into()),
            },
            None => (None, None),
        };
        let (host, arguments) = (Arc::clone(&self.host), request.arguments);
        let cancel = Cancel::default();
        let withdraw = cancel.clone();
        let span = tracing::Span::current();
        let running = tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                run(
                    &host, &principal, &tool, arguments, deadline, cancel, trace_id,
                )
            })
        });
        tokio::pin!(running);
        // A client's `notifications/cancelled` withdraws the invocation: it ends at the
        // sandbox's next tick, recorded as cancelled.
        let result = tokio::select! {
            result = &mut running => result,
            () = context.ct.cancelled() => {
                withdraw.cancel();
                running.await
            }
        }
        .map_err(joined)?;
        drop(turn);
        result.map(CallToolResponse::from)
    }
}

/// Serves MCP on stdin and stdout (newline-delimited JSON-RPC, nothing else on stdout) for
/// `principal`, until the client closes stdin.
pub async fn serve_stdio(host: Arc<Host>, principal: Principal) -> Result<(), Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::new(Code::Other, format!("mcp: {e}"));
    let running = Server::new(host, principal)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| failed(&e))?;
    running.waiting().await.map_err(|e| failed(&e))?;
    Ok(())
}

/// The streamable HTTP service of `/mcp`, for requests whose principal the HTTP layer has
/// authenticated and put in their extensions. A request whose `Origin` header is not one of
/// `mcp.allowed_origins` is refused (403), and with none listed every one is (rmcp validates
/// none unless told to). Bodies are capped at `server.max_body_bytes` (413).
pub fn http_service(
    host: Arc<Host>,
    turns: Turns,
) -> StreamableHttpService<Server, LocalSessionManager> {
    // The `Host` header is not checked against a list: the server is reached by whatever
    // address it listens on, and every request must carry a token anyway.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_allowed_origins(host.config.mcp.allowed_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(host.config.server.max_body_bytes);
    let server = Server::http(host, turns);
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: FC-PROTO-0902
    #[test]
    fn tool_names_are_capability_dot_function_within_the_allowed_characters() {
        assert_eq!(tool_name("hello", "greet").as_deref(), Some("hello.greet"));
        assert_eq!(
            tool_name("types", "femtoclaw:types-guest/math@0.1.0#double").as_deref(),
            Some("types.math.double")
        );
        assert_eq!(tool_name("bad name", "f"), None);
        assert_eq!(tool_name("a", &"f".repeat(MAX_TOOL_NAME)), None);
    }

    // Verifies: FC-PROTO-0916
    #[test]
    fn interfaces_of_the_same_short_name_collide() {
        let functions = [
            "greet",
            "a:one/math@0.1.0#double",
            "b:two/math@0.2.0#double",
        ];
        assert_eq!(
            colliding_tool("types", functions),
            Some((
                "types.math.double".to_owned(),
                "a:one/math@0.1.0#double",
                "b:two/math@0.2.0#double"
            ))
        );
        assert_eq!(
            colliding_tool("types", ["greet", "a:one/math@0.1.0#double"]),
            None
        );
    }

    // Verifies: FC-PROTO-0905
    #[test]
    fn portable_schemas_narrow_options_floats_and_bare_cases() {
        let option = json!({ "anyOf": [{ "type": "null" }, { "type": "string" }] });
        assert_eq!(portable(option), json!({ "type": "string" }));
        let float = json!({ "anyOf": [{ "type": "number" }, { "enum": ["NaN", "Infinity", "-Infinity"] }] });
        assert_eq!(portable(float), json!({ "type": "number" }));
        let case = json!({ "anyOf": [{ "const": "none" }, { "type": "object" }] });
        assert_eq!(portable(case), json!({ "enum": ["none"] }));
        let nested = json!({ "type": "object", "properties": { "x": { "anyOf": [{ "type": "null" },
            { "type": "array", "items": { "anyOf": [{ "type": "null" }, { "type": "integer" }] } }] } } });
        assert_eq!(
            portable(nested),
            json!({ "type": "object", "properties": { "x": { "type": "array", "items": { "type": "integer" } } } })
        );
    }
}
