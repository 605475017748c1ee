//! `wasi:sockets`: refused call by call, through the gate. FemtoClaw offers no raw sockets:
//! network egress is `femtoclaw:host/http`, where every request, hop and address is authorized.
//!
//! Sockets are not part of the virtualized baseline: a component that imports them needs an
//! explicit `link` grant. Where one is granted, every call passes the gate. The calls that
//! could open a socket (`create-tcp-socket`, `create-udp-socket`, `resolve-addresses`) ask the
//! policy for `net.connect` on the unspecified address of the family (`0.0.0.0` or `::`, "any
//! address"), so the attempt and its decision are recorded, and answer `access-denied` when the
//! policy refuses and `not-supported` when it allows. No socket or lookup stream is ever made,
//! so the methods on them cannot be reached; they are defined, gated, and trap if they were.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use femtoclaw_policy::{CallAction, Scope};
use wasmtime::component::{Resource, Val};

use crate::gate::{Gate, Registry};

const NETWORK: &str = "wasi:sockets/network@0.2.12";
const INSTANCE_NETWORK: &str = "wasi:sockets/instance-network@0.2.12";
const NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";
const TCP: &str = "wasi:sockets/tcp@0.2.12";
const TCP_CREATE: &str = "wasi:sockets/tcp-create-socket@0.2.12";
const UDP: &str = "wasi:sockets/udp@0.2.12";
const UDP_CREATE: &str = "wasi:sockets/udp-create-socket@0.2.12";

/// The network handle `instance-network` returns: it grants nothing.
struct Network;
/// The resource types of which no value is ever made.
struct TcpSocket;
struct UdpSocket;
struct IncomingDatagramStream;
struct OutgoingDatagramStream;
struct ResolveAddressStream;

/// The methods on resources no value of which is ever made.
const UNREACHABLE: &[(&str, &str)] = &[
    (TCP, "[method]tcp-socket.start-bind"),
    (TCP, "[method]tcp-socket.finish-bind"),
    (TCP, "[method]tcp-socket.start-connect"),
    (TCP, "[method]tcp-socket.finish-connect"),
    (TCP, "[method]tcp-socket.start-listen"),
    (TCP, "[method]tcp-socket.finish-listen"),
    (TCP, "[method]tcp-socket.accept"),
    (TCP, "[method]tcp-socket.local-address"),
    (TCP, "[method]tcp-socket.remote-address"),
    (TCP, "[method]tcp-socket.is-listening"),
    (TCP, "[method]tcp-socket.address-family"),
    (TCP, "[method]tcp-socket.set-listen-backlog-size"),
    (TCP, "[method]tcp-socket.keep-alive-enabled"),
    (TCP, "[method]tcp-socket.set-keep-alive-enabled"),
    (TCP, "[method]tcp-socket.keep-alive-idle-time"),
    (TCP, "[method]tcp-socket.set-keep-alive-idle-time"),
    (TCP, "[method]tcp-socket.keep-alive-interval"),
    (TCP, "[method]tcp-socket.set-keep-alive-interval"),
    (TCP, "[method]tcp-socket.keep-alive-count"),
    (TCP, "[method]tcp-socket.set-keep-alive-count"),
    (TCP, "[method]tcp-socket.hop-limit"),
    (TCP, "[method]tcp-socket.set-hop-limit"),
    (TCP, "[method]tcp-socket.receive-buffer-size"),
    (TCP, "[method]tcp-socket.set-receive-buffer-size"),
    (TCP, "[method]tcp-socket.send-buffer-size"),
    (TCP, "[method]tcp-socket.set-send-buffer-size"),
    (TCP, "[method]tcp-socket.subscribe"),
    (TCP, "[method]tcp-socket.shutdown"),
    (UDP, "[method]udp-socket.start-bind"),
    (UDP, "[method]udp-socket.finish-bind"),
    (UDP, "[method]udp-socket.stream"),
    (UDP, "[method]udp-socket.local-address"),
    (UDP, "[method]udp-socket.remote-address"),
    (UDP, "[method]udp-socket.address-family"),
    (UDP, "[method]udp-socket.unicast-hop-limit"),
    (UDP, "[method]udp-socket.set-unicast-hop-limit"),
    (UDP, "[method]udp-socket.receive-buffer-size"),
    (UDP, "[method]udp-socket.set-receive-buffer-size"),
    (UDP, "[method]udp-socket.send-buffer-size"),
    (UDP, "[method]udp-socket.set-send-buffer-size"),
    (UDP, "[method]udp-socket.subscribe"),
    (UDP, "[method]incoming-datagram-stream.receive"),
    (UDP, "[method]incoming-datagram-stream.subscribe"),
    (UDP, "[method]outgoing-datagram-stream.check-send"),
    (UDP, "[method]outgoing-datagram-stream.send"),
    (UDP, "[method]outgoing-datagram-stream.subscribe"),
    (
        NAME_LOOKUP,
        "[method]resolve-address-stream.resolve-next-address",
    ),
    (NAME_LOOKUP, "[method]resolve-address-stream.subscribe"),
];

/// The unspecified address of the family a call names (`ipv4` or `ipv6`).
fn any_address(params: &[Val]) -> IpAddr {
    match params.first() {
        Some(Val::Enum(family)) if family == "ipv6" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// Asks the policy about opening a socket and refuses it either way, as the call's WIT error.
fn refuse(authority: &mut crate::gate::Authority<'_>, address: IpAddr) -> Vec<Val> {
    let code = match authority.check(CallAction::NetConnect, &Scope::Address(address)) {
        Ok(()) => "not-supported",
        Err(_) => "access-denied",
    };
    vec![Val::Result(Err(Some(Box::new(Val::Enum(code.to_owned())))))]
}

pub(crate) fn add_to_linker(registry: &mut Registry) -> wasmtime::Result<()> {
    Gate::resource::<Network>(registry, NETWORK, "network")?;
    Gate::resource::<TcpSocket>(registry, TCP, "tcp-socket")?;
    Gate::resource::<UdpSocket>(registry, UDP, "udp-socket")?;
    Gate::resource::<IncomingDatagramStream>(registry, UDP, "incoming-datagram-stream")?;
    Gate::resource::<OutgoingDatagramStream>(registry, UDP, "outgoing-datagram-stream")?;
    Gate::resource::<ResolveAddressStream>(registry, NAME_LOOKUP, "resolve-address-stream")?;
    Gate::define(
        registry,
        INSTANCE_NETWORK,
        "instance-network",
        |state, (): &()| {
            let network: Resource<Network> = state.table.push(Network)?;
            Ok((network,))
        },
    )?;
    for (interface, function) in [
        (TCP_CREATE, "create-tcp-socket"),
        (UDP_CREATE, "create-udp-socket"),
    ] {
        Gate::define_dynamic(registry, interface, function, |_, authority, _, params| {
            Ok(refuse(authority, any_address(params)))
        })?;
    }
    Gate::define_dynamic(
        registry,
        NAME_LOOKUP,
        "resolve-addresses",
        |_, authority, _, _| Ok(refuse(authority, IpAddr::V4(Ipv4Addr::UNSPECIFIED))),
    )?;
    for &(interface, function) in UNREACHABLE {
        Gate::define_dynamic(registry, interface, function, move |_, _, _, _| {
            wasmtime::bail!("`{interface}#{function}`: no socket exists (the host opens none)")
        })?;
    }
    Ok(())
}
